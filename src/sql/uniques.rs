//! `UNIQUE` constraints of `CREATE TABLE` and `ALTER TABLE ... ADD`: their columns and
//! names, as Postgres chooses them. Enforcing them is the table writer's business
//! (`stream::unique`).

use std::collections::HashSet;

use datafusion::sql::sqlparser::ast::{Expr, Ident, NullsDistinctOption, UniqueConstraint};

use super::ddl::normalize_ident;
use crate::catalog::{Catalog, ColumnDesc, UniqueDef};
use crate::common::{Error, Result, SqlState};

/// Longest identifier Postgres keeps (NAMEDATALEN - 1).
pub const NAME_BYTES_MAX: usize = 63;

/// A UNIQUE constraint as written: a column constraint names its column.
pub struct DeclaredUnique {
    pub constraint: UniqueConstraint,
    /// The name given as `CONSTRAINT name UNIQUE` on a column.
    pub name: Option<Ident>,
    pub column: Option<usize>,
}

/// The UNIQUE constraints of table `table` in `schema`, named as Postgres names them: the
/// given name, else `<table>_<columns>_key` numbered from 1 when another relation (or
/// constraint of the table: `taken`) has it. Each gets a state table from `catalog`.
pub fn bind_uniques(
    declared: Vec<DeclaredUnique>,
    columns: &[ColumnDesc],
    (schema, table): (&str, &str),
    taken: &mut HashSet<String>,
    catalog: &mut Catalog,
) -> Result<Vec<UniqueDef>> {
    let mut uniques = Vec::with_capacity(declared.len());
    for unique in declared {
        let constraint = &unique.constraint;
        if constraint.index_type.is_some() || !constraint.index_options.is_empty() {
            return Err(Error::unsupported("index options on a UNIQUE constraint"));
        }
        if constraint.characteristics.is_some() {
            return Err(Error::unsupported("DEFERRABLE or INITIALLY DEFERRED UNIQUE constraints"));
        }
        let indexes = match unique.column {
            Some(column) if constraint.columns.is_empty() => vec![column],
            _ => constraint
                .columns
                .iter()
                .map(|c| column_index(&c.column.expr, columns))
                .collect::<Result<Vec<_>>>()?,
        };
        if indexes.iter().collect::<HashSet<_>>().len() != indexes.len() {
            return Err(Error::new(SqlState::DuplicateColumn, "column appears twice in unique constraint"));
        }
        let given = unique.name.as_ref().or(constraint.name.as_ref()).map(normalize_ident);
        let name = match given {
            // Its index is a relation: a name another relation (or another UNIQUE of the
            // statement) has is 42P07, one of the table's other constraints 42710.
            Some(name)
                if uniques.iter().any(|u: &UniqueDef| u.name == name)
                    || catalog.relation_name_taken(schema, &name, crate::state::TableId::MAX) =>
            {
                return Err(Error::new(
                    SqlState::DuplicateTable,
                    format!("relation \"{name}\" already exists"),
                ));
            }
            Some(name) if taken.contains(&name) => {
                return Err(Error::new(
                    SqlState::DuplicateObject,
                    format!("constraint \"{name}\" for relation \"{table}\" already exists"),
                ));
            }
            Some(name) => name,
            None => {
                let names: Vec<&str> = indexes.iter().map(|&i| columns[i].name.as_str()).collect();
                choose_name(catalog, schema, &format!("{table}_{}", names.join("_")), "key", taken)
            }
        };
        taken.insert(name.clone());
        uniques.push(UniqueDef {
            name,
            columns: indexes,
            state: catalog.allocate_table_id(),
            nulls_not_distinct: matches!(constraint.nulls_distinct, NullsDistinctOption::NotDistinct),
            index_only: false,
        });
    }
    Ok(uniques)
}

/// Postgres' name for an unnamed index or constraint: `<stem>_<suffix>`, numbered from 1
/// (`<stem>_<suffix>1`) while another relation in `schema`, or a name in `taken`, has it;
/// the stem is cut so the name fits in 63 bytes.
pub fn choose_name(
    catalog: &Catalog,
    schema: &str,
    stem: &str,
    suffix: &str,
    taken: &HashSet<String>,
) -> String {
    (0..)
        .map(|n| {
            let suffix = if n == 0 { format!("_{suffix}") } else { format!("_{suffix}{n}") };
            let mut stem = stem.to_string();
            while stem.len() + suffix.len() > NAME_BYTES_MAX {
                stem.pop();
            }
            stem + &suffix
        })
        .find(|name| {
            !taken.contains(name) && !catalog.relation_name_taken(schema, name, crate::state::TableId::MAX)
        })
        .expect("some numbered name is free")
}

fn column_index(expr: &Expr, columns: &[ColumnDesc]) -> Result<usize> {
    let name = match expr {
        Expr::Identifier(ident) => normalize_ident(ident),
        other => return Err(Error::unsupported(format!("expression {other} in a UNIQUE constraint"))),
    };
    columns.iter().position(|c| c.name == name && !c.hidden).ok_or_else(|| {
        Error::new(SqlState::UndefinedColumn, format!("column \"{name}\" named in key does not exist"))
    })
}
