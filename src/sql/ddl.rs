//! Binding of DDL statements against the catalog.

use std::collections::HashSet;

use datafusion::sql::sqlparser::ast::{
    ColumnDef, ColumnOption, CreateTable, Expr, Ident, ObjectName, TableConstraint,
};

use super::checks::DeclaredCheck;
use super::uniques::DeclaredUnique;
use crate::catalog::{Catalog, ColumnDesc, ROW_ID_COLUMN, TableDesc};
use crate::common::{Error, Result, SqlState, SqlType};

/// An identifier as Postgres folds it: unquoted names are lower-cased.
pub fn normalize_ident(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// `(schema, name)` of a possibly qualified relation name.
pub fn resolve_name(name: &ObjectName, default_schema: &str) -> Result<(String, String)> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| {
            part.as_ident()
                .map(normalize_ident)
                .ok_or_else(|| Error::new(SqlState::SyntaxError, format!("invalid name {name}")))
        })
        .collect::<Result<_>>()?;
    match parts.as_slice() {
        [table] => Ok((default_schema.to_string(), table.clone())),
        [schema, table] | [_, schema, table] => Ok((schema.clone(), table.clone())),
        _ => Err(Error::new(
            SqlState::SyntaxError,
            format!("improper qualified name (too many dotted names): {name}"),
        )),
    }
}

/// Builds the descriptor of a new table from `CREATE TABLE`.
pub fn bind_create_table(
    create: &CreateTable,
    catalog: &mut Catalog,
    default_schema: &str,
) -> Result<TableDesc> {
    reject_unsupported_table_options(create)?;
    let (schema, name) = resolve_name(&create.name, default_schema)?;
    if !catalog.schema_exists(&schema) {
        return Err(Error::new(SqlState::UndefinedSchema, format!("schema \"{schema}\" does not exist")));
    }
    if create.columns.is_empty() {
        return Err(Error::unsupported("a table without columns"));
    }
    let BoundColumns { mut columns, primary_key, checks, uniques } =
        bind_columns(&create.columns, &create.constraints, &name)?;
    let checks = super::checks::bind_checks(checks, &columns, &name)?;
    let primary_key = key_columns(&mut columns, primary_key);
    let id = catalog.allocate_table_id();
    let mut taken: HashSet<String> = checks.iter().map(|c| c.name.clone()).collect();
    taken.insert(format!("{name}_pkey"));
    let uniques = super::uniques::bind_uniques(uniques, &columns, (&schema, &name), &mut taken, catalog)?;
    Ok(TableDesc {
        id,
        schema,
        name,
        columns,
        primary_key,
        view: None,
        connector: None,
        append_only: false,
        watermark: None,
        plain_view: None,
        checks,
        key_constraint: None,
        uniques,
    })
}

/// The key of a new relation: its declared primary key (whose columns become NOT NULL),
/// or a hidden row id appended to `columns`.
pub fn key_columns(columns: &mut Vec<ColumnDesc>, primary_key: Option<Vec<usize>>) -> Vec<usize> {
    match primary_key {
        Some(key) => {
            for &i in &key {
                columns[i].nullable = false;
            }
            key
        }
        None => {
            columns.push(row_id_column());
            vec![columns.len() - 1]
        }
    }
}

/// What the column list of a `CREATE TABLE` (or `CREATE SOURCE`) declares.
pub struct BoundColumns {
    pub columns: Vec<ColumnDesc>,
    /// The primary key, if declared.
    pub primary_key: Option<Vec<usize>>,
    /// CHECK constraints as written.
    pub checks: Vec<DeclaredCheck>,
    /// UNIQUE constraints as written.
    pub uniques: Vec<DeclaredUnique>,
}

/// The columns of a `CREATE TABLE` (or `CREATE SOURCE`), its primary key and its CHECK
/// constraints.
pub fn bind_columns(
    definitions: &[ColumnDef],
    constraints: &[TableConstraint],
    name: &str,
) -> Result<BoundColumns> {
    let mut columns = Vec::with_capacity(definitions.len() + 1);
    let mut primary_key: Option<Vec<usize>> = None;
    let mut checks = Vec::new();
    let mut uniques = Vec::new();
    let mut seen = HashSet::new();
    for (index, column) in definitions.iter().enumerate() {
        let column_name = normalize_ident(&column.name);
        if !seen.insert(column_name.clone()) || column_name == ROW_ID_COLUMN {
            return Err(Error::new(
                SqlState::DuplicateColumn,
                format!("column \"{column_name}\" specified more than once"),
            ));
        }
        let mut desc = ColumnDesc {
            name: column_name,
            sql_type: SqlType::from_ast(&column.data_type)?,
            nullable: true,
            default: None,
            hidden: false,
        };
        for option in &column.options {
            match &option.option {
                ColumnOption::Null => desc.nullable = true,
                ColumnOption::NotNull => desc.nullable = false,
                ColumnOption::Default(expr) => desc.default = Some(expr.to_string()),
                ColumnOption::PrimaryKey(_) => set_primary_key(&mut primary_key, vec![index], name)?,
                ColumnOption::Check(constraint) => checks.push(DeclaredCheck {
                    constraint: constraint.clone(),
                    name: option.name.clone(),
                    column: Some(index),
                }),
                ColumnOption::Unique(constraint) => uniques.push(DeclaredUnique {
                    constraint: constraint.clone(),
                    name: option.name.clone(),
                    column: Some(index),
                }),
                other => return Err(Error::unsupported(format!("column constraint {other}"))),
            }
        }
        columns.push(desc);
    }
    for constraint in constraints {
        match constraint {
            TableConstraint::PrimaryKey(pk) => {
                let indexes = pk
                    .columns
                    .iter()
                    .map(|c| key_column_index(&c.column.expr, &columns))
                    .collect::<Result<Vec<_>>>()?;
                set_primary_key(&mut primary_key, indexes, name)?;
            }
            TableConstraint::Check(constraint) => {
                checks.push(DeclaredCheck { constraint: constraint.clone(), name: None, column: None })
            }
            TableConstraint::Unique(constraint) => {
                uniques.push(DeclaredUnique { constraint: constraint.clone(), name: None, column: None })
            }
            other => return Err(Error::unsupported(format!("table constraint {other}"))),
        }
    }
    Ok(BoundColumns { columns, primary_key, checks, uniques })
}

/// The hidden row id column that keys a table (or source) declared without a key.
pub fn row_id_column() -> ColumnDesc {
    ColumnDesc {
        name: ROW_ID_COLUMN.into(),
        sql_type: SqlType::Int64,
        nullable: false,
        default: None,
        hidden: true,
    }
}

fn reject_unsupported_table_options(create: &CreateTable) -> Result<()> {
    if create.query.is_some() {
        return Err(Error::unsupported("CREATE TABLE ... AS")
            .with_hint("create the table, then INSERT INTO ... SELECT"));
    }
    if create.temporary {
        return Err(Error::unsupported("TEMPORARY tables"));
    }
    if create.or_replace {
        return Err(Error::unsupported("CREATE OR REPLACE TABLE"));
    }
    Ok(())
}

fn set_primary_key(current: &mut Option<Vec<usize>>, key: Vec<usize>, table: &str) -> Result<()> {
    if current.is_some() {
        return Err(Error::new(
            SqlState::InvalidTableDefinition,
            format!("multiple primary keys for table \"{table}\" are not allowed"),
        ));
    }
    let unique: HashSet<_> = key.iter().collect();
    if unique.len() != key.len() {
        return Err(Error::new(SqlState::DuplicateColumn, "column appears twice in primary key constraint"));
    }
    *current = Some(key);
    Ok(())
}

fn key_column_index(expr: &Expr, columns: &[ColumnDesc]) -> Result<usize> {
    let name = match expr {
        Expr::Identifier(ident) => normalize_ident(ident),
        other => return Err(Error::unsupported(format!("primary key expression {other}"))),
    };
    columns.iter().position(|c| c.name == name).ok_or_else(|| {
        Error::new(SqlState::UndefinedColumn, format!("column \"{name}\" named in key does not exist"))
    })
}

/// The names in `DROP TABLE a, b` resolved to existing tables; missing ones are an error
/// unless `if_exists`, in which case they are skipped with a notice.
pub fn resolve_drop_targets(
    names: &[ObjectName],
    catalog: &Catalog,
    default_schema: &str,
    if_exists: bool,
    kind: &str,
    notices: &mut Vec<String>,
) -> Result<Vec<std::sync::Arc<TableDesc>>> {
    let mut targets = Vec::new();
    for name in names {
        let (schema, table) = resolve_name(name, default_schema)?;
        match catalog.table(&schema, &table) {
            Some(desc) => targets.push(desc.clone()),
            None if if_exists => notices.push(format!("{kind} \"{table}\" does not exist, skipping")),
            None => {
                // Postgres: a missing index is an undefined object, the rest undefined tables.
                let state =
                    if kind == "index" { SqlState::UndefinedObject } else { SqlState::UndefinedTable };
                return Err(Error::new(state, format!("{kind} \"{table}\" does not exist")));
            }
        }
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{Statement, parse};

    fn bind(sql: &str) -> Result<TableDesc> {
        let Statement::Sql(statement) = parse(sql)?.remove(0) else { panic!("not sql") };
        let datafusion::sql::sqlparser::ast::Statement::CreateTable(create) = *statement else {
            panic!("not create")
        };
        bind_create_table(&create, &mut Catalog::new(), "public")
    }

    #[test]
    fn primary_key_columns_become_not_null() {
        let desc = bind("CREATE TABLE T (a INT, b TEXT DEFAULT 'x', PRIMARY KEY (b, a))").unwrap();
        assert_eq!(desc.name, "t");
        assert_eq!(desc.primary_key, vec![1, 0]);
        assert!(!desc.columns[0].nullable);
        assert_eq!(desc.columns[1].default.as_deref(), Some("'x'"));
        assert!(!desc.has_row_id());
    }

    #[test]
    fn tables_without_a_key_get_a_hidden_row_id() {
        let desc = bind("CREATE TABLE t (a INT NOT NULL)").unwrap();
        assert!(desc.has_row_id());
        assert_eq!(desc.visible_schema().fields().len(), 1);
        assert_eq!(desc.full_schema().fields().len(), 2);
    }

    #[test]
    fn unique_constraints_are_named_as_postgres_names_them() {
        let desc =
            bind("CREATE TABLE t (a INT UNIQUE, b INT CONSTRAINT mine UNIQUE, UNIQUE (a, b), UNIQUE (a))")
                .unwrap();
        let names: Vec<&str> = desc.uniques.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["t_a_key", "mine", "t_a_b_key", "t_a_key1"]);
        assert_eq!(desc.uniques[2].columns, [0, 1]);
        // Each has a state table of its own.
        let states: std::collections::HashSet<_> = desc.uniques.iter().map(|u| u.state).collect();
        assert_eq!(states.len(), 4);
        assert!(!states.contains(&desc.id));
    }

    #[test]
    fn bad_definitions_are_rejected_with_their_sqlstate() {
        let code = |sql| bind(sql).unwrap_err().sqlstate().code();
        assert_eq!(code("CREATE TABLE t (a INT, a INT)"), "42701");
        assert_eq!(code("CREATE TABLE t (a INT PRIMARY KEY, b INT PRIMARY KEY)"), "42P16");
        assert_eq!(code("CREATE TABLE t (a INT, PRIMARY KEY (z))"), "42703");
        assert_eq!(code("CREATE TABLE t (a INT REFERENCES u (b))"), "0A000");
        assert_eq!(code("CREATE TABLE t (a INT, UNIQUE (a, a))"), "42701");
        assert_eq!(code("CREATE TABLE t (a INT, UNIQUE (z))"), "42703");
        assert_eq!(code("CREATE TABLE t (a widget)"), "42704");
    }
}
