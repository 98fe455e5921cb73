//! `CHECK` constraints of `CREATE TABLE`: names and the columns each reads, as Postgres
//! chooses them. Whether the condition is boolean, and its value for each written row, is
//! the engine's business (`engine::checks`).

use std::collections::{BTreeSet, HashSet};
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{CheckConstraint, Expr, Ident, Visit, Visitor};

use super::ddl::normalize_ident;
use crate::catalog::{CheckDef, ColumnDesc};
use crate::common::{Error, Result, SqlState};

/// A CHECK as written: a column constraint names its column.
pub struct DeclaredCheck {
    pub constraint: CheckConstraint,
    /// The constraint's name when given as `CONSTRAINT name CHECK ...` on a column.
    pub name: Option<Ident>,
    pub column: Option<usize>,
}

/// The CHECK constraints of table `table`, named as Postgres names them: the given name,
/// else `<table>_<column>_check` when the constraint is on one column (declared on it, or
/// reading only it), else `<table>_check`; repeats get `1`, `2`, ... Sorted by name.
pub fn bind_checks(
    declared: Vec<DeclaredCheck>,
    columns: &[ColumnDesc],
    table: &str,
) -> Result<Vec<CheckDef>> {
    let mut taken = HashSet::new();
    let mut checks = Vec::with_capacity(declared.len());
    for check in declared {
        if check.constraint.enforced == Some(false) {
            return Err(Error::unsupported("NOT ENFORCED check constraints"));
        }
        let read = columns_read(&check.constraint.expr, columns)?;
        let given = check.name.as_ref().or(check.constraint.name.as_ref()).map(normalize_ident);
        let name = match given {
            Some(name) if !taken.insert(name.clone()) => {
                return Err(Error::new(
                    SqlState::DuplicateObject,
                    format!("constraint \"{name}\" for relation \"{table}\" already exists"),
                ));
            }
            Some(name) => name,
            None => {
                let single = check.column.or_else(|| (read.len() == 1).then(|| *read.first().expect("one")));
                let base = match single {
                    Some(i) => format!("{table}_{}_check", columns[i].name),
                    None => format!("{table}_check"),
                };
                unique_name(&base, &mut taken)
            }
        };
        checks.push(CheckDef { name, expression: check.constraint.expr.to_string(), columns: read });
    }
    checks.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(checks)
}

fn unique_name(base: &str, taken: &mut HashSet<String>) -> String {
    let mut name = base.to_string();
    let mut suffix = 1;
    while !taken.insert(name.clone()) {
        name = format!("{base}{suffix}");
        suffix += 1;
    }
    name
}

/// Indexes of the columns `expr` names, in table order; an unknown name is 42703.
fn columns_read(expr: &Expr, columns: &[ColumnDesc]) -> Result<Vec<usize>> {
    struct Names(Vec<String>);
    impl Visitor for Names {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Identifier(ident) => self.0.push(normalize_ident(ident)),
                Expr::CompoundIdentifier(parts) => {
                    if let Some(last) = parts.last() {
                        self.0.push(normalize_ident(last));
                    }
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut names = Names(Vec::new());
    let _ = expr.visit(&mut names);
    let mut read = BTreeSet::new();
    for name in names.0 {
        let index = columns.iter().position(|c| c.name == name && !c.hidden).ok_or_else(|| {
            Error::new(SqlState::UndefinedColumn, format!("column \"{name}\" does not exist"))
        })?;
        read.insert(index);
    }
    Ok(read.into_iter().collect())
}
