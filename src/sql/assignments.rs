//! The queries behind `UPDATE ... FROM` and `INSERT ... ON CONFLICT DO UPDATE`, which
//! DataFusion does not plan: each is a SELECT over the target table that yields every
//! column's new value (its SET expression, or the stored value), then what the engine
//! needs to pair new rows with old ones.
//!
//! `UPDATE t SET cents = t.cents + c.delta FROM change c WHERE c.item = t.item` becomes
//!
//! ```sql
//! SELECT "t"."item", t.cents + c.delta AS "cents", "t"."item" AS __sabot_old_0,
//!        "t"."cents" AS __sabot_old_1
//! FROM "public"."t", change c WHERE c.item = t.item
//! ```
//!
//! A target row that matches several times changes once, with its first match (the
//! engine keeps the first row per key; Postgres leaves which one unspecified).

use std::collections::HashSet;

use datafusion::sql::sqlparser::ast::{self, AssignmentTarget, Expr, Ident, TableWithJoins};

use super::ddl::normalize_ident;
use crate::common::{Error, Result, SqlState};

/// The table whose new rows a query computes.
pub struct Target<'a> {
    /// Its quoted, qualified name.
    pub relation: &'a str,
    /// `UPDATE t AS a` / `INSERT INTO t AS a`.
    pub alias: Option<&'a Ident>,
    /// Its name, for error messages.
    pub name: &'a str,
    /// Every column, hidden ones included, in order.
    pub columns: &'a [String],
}

impl Target<'_> {
    /// How the query names the stored row: the alias, else the table's name.
    pub fn qualifier(&self) -> String {
        self.alias.map_or_else(|| quote(self.name), |a| quote(&normalize_ident(a)))
    }

    /// `SELECT <each column's new value>, <extra> FROM <target> [, <from>] [WHERE filter]`,
    /// with `rewrite` applied to the SET and WHERE expressions. Fails like Postgres for
    /// unknown or repeated SET columns.
    pub fn new_rows_query(
        &self,
        assignments: &[ast::Assignment],
        filter: Option<&Expr>,
        rewrite: fn(&Expr) -> Expr,
        extra: &[String],
        from: &[TableWithJoins],
    ) -> Result<ast::Statement> {
        let assigned = self.assigned_values(assignments, rewrite)?;
        let qualifier = self.qualifier();
        let new = self.columns.iter().zip(assigned).map(|(column, value)| match value {
            Some(expr) => format!("{expr} AS {}", quote(column)),
            None => format!("{qualifier}.{}", quote(column)),
        });
        let items: Vec<String> = new.chain(extra.iter().cloned()).collect();
        let mut relations = vec![match self.alias {
            Some(alias) => format!("{} AS {alias}", self.relation),
            None => self.relation.to_string(),
        }];
        relations.extend(from.iter().map(ToString::to_string));
        let filter = filter.map(|f| format!(" WHERE {}", rewrite(f))).unwrap_or_default();
        super::parser::parse_generated(&format!(
            "SELECT {} FROM {}{filter}",
            items.join(", "),
            relations.join(", ")
        ))
    }

    /// The SQL text of each column's new value (None where SET leaves it).
    fn assigned_values(
        &self,
        assignments: &[ast::Assignment],
        rewrite: fn(&Expr) -> Expr,
    ) -> Result<Vec<Option<String>>> {
        let mut assigned: Vec<Option<String>> = vec![None; self.columns.len()];
        let mut seen = HashSet::new();
        for assignment in assignments {
            let AssignmentTarget::ColumnName(target) = &assignment.target else {
                return Err(Error::unsupported("SET of a column tuple"));
            };
            let name = target.0.last().and_then(|p| p.as_ident()).map(normalize_ident).unwrap_or_default();
            let Some(index) = self.columns.iter().position(|c| *c == name) else {
                return Err(Error::new(
                    SqlState::UndefinedColumn,
                    format!("column \"{name}\" of relation \"{}\" does not exist", self.name),
                ));
            };
            if !seen.insert(index) {
                return Err(Error::new(
                    SqlState::SyntaxError,
                    format!("multiple assignments to same column \"{name}\""),
                ));
            }
            assigned[index] = Some(rewrite(&assignment.value).to_string());
        }
        Ok(assigned)
    }
}

/// `UPDATE ... FROM`: per match, the target's new row, then its old row as
/// `{old_prefix}{i}`.
pub fn update_from_query(
    target: &Target,
    update: &ast::Update,
    from: &[TableWithJoins],
    old_prefix: &str,
) -> Result<ast::Statement> {
    let qualifier = target.qualifier();
    let old: Vec<String> = target
        .columns
        .iter()
        .enumerate()
        .map(|(i, column)| format!("{qualifier}.{} AS {old_prefix}{i}", quote(column)))
        .collect();
    target.new_rows_query(&update.assignments, update.selection.as_ref(), Expr::clone, &old, from)
}

pub(super) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
