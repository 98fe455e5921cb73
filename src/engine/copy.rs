//! `COPY ... FROM STDIN` (the client streams data in, inserted as one statement) and
//! `COPY ... TO STDOUT` (a query's rows streamed out in the text or CSV format).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::sql::sqlparser::ast::{self, CopyLegacyOption, CopyOption, CopySource, CopyTarget};

use super::dml::{COPY_INPUT, quote_ident, quoted_name};
use super::session::{Outcome, OutcomeKind, Session};
use crate::catalog::TableDesc;
use crate::common::{Error, Result, SqlState};
use crate::sql::copy::{CopyOptions, parse_copy_data};
use crate::sql::ddl::normalize_ident;

/// A COPY FROM STDIN waiting for its data.
pub struct CopyIn {
    desc: Arc<TableDesc>,
    columns: Vec<String>,
    options: CopyOptions,
    data: Vec<u8>,
}

impl Session {
    /// `COPY t [(columns)] TO STDOUT` or `COPY (query) TO STDOUT`: the rows, with the
    /// options the server writes them in. Any relation a query can read may be copied
    /// (Postgres refuses views here and asks for `COPY (SELECT ...)`; Sabot need not).
    pub(super) async fn copy_to(
        &mut self,
        source: &CopySource,
        target: &CopyTarget,
        options: &[CopyOption],
        legacy_options: &[CopyLegacyOption],
        params: &[ScalarValue],
    ) -> Result<Outcome> {
        if *target != CopyTarget::Stdout {
            return Err(Error::unsupported(format!("COPY TO {target}"))
                .with_hint("the server writes no files: use COPY TO STDOUT (psql's \\copy)"));
        }
        let options = CopyOptions::from_ast(options, legacy_options)?;
        let query = match source {
            CopySource::Query(query) => ast::Statement::Query(query.clone()),
            CopySource::Table { table_name, columns } => {
                let list = if columns.is_empty() {
                    "*".to_string()
                } else {
                    columns.iter().map(|c| quote_ident(&normalize_ident(c))).collect::<Vec<_>>().join(", ")
                };
                crate::sql::parser::parse_generated(&format!("SELECT {list} FROM {table_name}"))?
            }
        };
        let mut outcome = self.query(&query, params).await?;
        if outcome.rows.is_none() {
            return Err(Error::new(SqlState::FeatureNotSupported, "COPY query must have a result"));
        }
        outcome.tag = "COPY".to_string();
        outcome.kind = OutcomeKind::CopyOut(options);
        Ok(outcome)
    }

    pub(super) fn copy_from(
        &mut self,
        source: &CopySource,
        target: &CopyTarget,
        options: &[CopyOption],
        legacy_options: &[CopyLegacyOption],
    ) -> Result<Outcome> {
        if *target != CopyTarget::Stdin {
            return Err(Error::unsupported(format!("COPY FROM {target}"))
                .with_hint("the server reads no files: use COPY FROM STDIN (psql's \\copy)"));
        }
        let CopySource::Table { table_name, columns } = source else {
            return Err(Error::new(SqlState::SyntaxError, "COPY FROM needs a table"));
        };
        let desc = self.writable_table(table_name)?;
        let columns: Vec<String> = if columns.is_empty() {
            desc.columns.iter().filter(|c| !c.hidden).map(|c| c.name.clone()).collect()
        } else {
            columns.iter().map(normalize_ident).collect()
        };
        for column in &columns {
            if desc.column_index(column).is_none_or(|i| desc.columns[i].hidden) {
                return Err(Error::new(
                    SqlState::UndefinedColumn,
                    format!("column \"{column}\" of relation \"{}\" does not exist", desc.name),
                ));
            }
        }
        let options = CopyOptions::from_ast(options, legacy_options)?;
        let count = columns.len();
        self.copy = Some(CopyIn { desc, columns, options, data: Vec::new() });
        Ok(Outcome { kind: OutcomeKind::CopyIn { columns: count }, ..Outcome::command("COPY") })
    }

    /// Buffers a piece of COPY data.
    pub fn copy_data(&mut self, data: &[u8]) -> Result<()> {
        let copy = self
            .copy
            .as_mut()
            .ok_or_else(|| Error::new(SqlState::ProtocolViolation, "no COPY in progress"))?;
        let limit = self.settings.statement_memory_bytes_max();
        if copy.data.len() + data.len() > limit {
            self.copy = None;
            return Err(Error::new(
                SqlState::OutOfMemory,
                format!("COPY data exceeds statement_memory_bytes_max ({limit} bytes)"),
            )
            .with_hint("split the load into several COPY statements"));
        }
        copy.data.extend_from_slice(data);
        Ok(())
    }

    /// Ends COPY: parses everything received and inserts it as one statement.
    pub async fn copy_done(&mut self) -> Result<Outcome> {
        let copy =
            self.copy.take().ok_or_else(|| Error::new(SqlState::ProtocolViolation, "no COPY in progress"))?;
        let strings = parse_copy_data(&copy.data, &copy.options, &copy.columns)?;
        self.insert_strings(&copy.desc, &copy.columns, strings).await
    }

    /// Inserts text columns into `desc`, cast to the column types as INSERT would.
    async fn insert_strings(
        &mut self,
        desc: &TableDesc,
        columns: &[String],
        strings: Vec<ArrayRef>,
    ) -> Result<Outcome> {
        let schema = Arc::new(Schema::new(
            columns.iter().map(|c| Field::new(c, DataType::Utf8, true)).collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_new(schema.clone(), strings)?;
        let input: Arc<dyn TableProvider> = Arc::new(MemTable::try_new(schema, vec![vec![batch]])?);
        let sql = format!(
            "INSERT INTO {} ({}) SELECT * FROM {COPY_INPUT}",
            quoted_name(desc),
            columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ")
        );
        let statement = crate::sql::parser::parse_generated(&sql)?;
        let ast::Statement::Insert(insert) = &statement else {
            return Err(Error::internal("COPY produced no INSERT"));
        };
        let outcome = self.insert(insert, &[], Some(input)).await?;
        Ok(Outcome::affected("COPY", outcome.rows_affected.unwrap_or(0)))
    }

    /// Abandons a COPY (client sent CopyFail or went away): nothing is applied.
    pub fn copy_fail(&mut self) {
        self.copy = None;
    }
}
