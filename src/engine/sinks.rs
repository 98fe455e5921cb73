//! DROP SINK. A sink is created as a view whose rows go to its connector
//! (`Session::create_sink`, `views::create_materialized_view`), and its dataflow restarts
//! with the views'.

use datafusion::sql::sqlparser::ast::ObjectName;

use super::Database;
use super::session::Outcome;
use crate::catalog::TableDesc;
use crate::common::Result;

impl Database {
    pub(super) async fn drop_sinks(
        &self,
        names: &[ObjectName],
        if_exists: bool,
        cascade: bool,
        schema: &str,
    ) -> Result<Outcome> {
        let notices =
            self.drop_of_kind(names, if_exists, cascade, schema, "sink", TableDesc::is_sink).await?;
        Ok(Outcome::command("DROP SINK").with_notices(notices))
    }
}
