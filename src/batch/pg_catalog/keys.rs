//! The keys and constraints of `pg_catalog`: `pg_index`, `pg_indexes` and `pg_constraint`
//! (primary keys, UNIQUE constraints and unique indexes, `CREATE INDEX` indexes, CHECK
//! constraints), and the definitions `pg_get_indexdef` / `pg_get_constraintdef` print.

use super::{
    Relation, boolean, check_oid, has_primary_key, int, namespace_oid, oid, primary_key_oid, relation_oid,
    text,
};
use crate::catalog::{Catalog, TableDesc};

const INDEX_COLUMNS: &str = "indexrelid:oid indrelid:oid indnatts:int2 indnkeyatts:int2 indisunique:bool \
     indnullsnotdistinct:bool indisprimary:bool indisexclusion:bool indimmediate:bool \
     indisclustered:bool indisvalid:bool indcheckxmin:bool indisready:bool indislive:bool \
     indisreplident:bool indkey:text indcollation:text indclass:text indoption:text \
     indexprs:text indpred:text";

const CONSTRAINT_COLUMNS: &str = "oid:oid conname:name connamespace:oid contype:char condeferrable:bool \
     condeferred:bool convalidated:bool conrelid:oid contypid:oid conindid:oid conparentid:oid \
     confrelid:oid confupdtype:char confdeltype:char confmatchtype:char conislocal:bool \
     coninhcount:int4 connoinherit:bool conkey:text confkey:text conbin:text";

/// A primary key's columns as attribute numbers (1-based, among the visible columns).
fn key_numbers(desc: &TableDesc) -> Vec<i64> {
    desc.primary_key.iter().map(|&i| i as i64 + 1).collect()
}

/// `pg_index`: each table's primary key and every index (`CREATE INDEX`).
pub(super) fn indexes(catalog: &Catalog) -> Relation {
    let mut relation = Relation::new(INDEX_COLUMNS);
    for desc in catalog.tables().filter(|d| has_primary_key(d)) {
        relation.push(index_row(
            primary_key_oid(desc.id),
            desc.id,
            &key_numbers(desc),
            &[],
            IndexKind::Primary,
        ));
    }
    let numbers = |columns: &[usize]| columns.iter().map(|&i| i as i64 + 1).collect::<Vec<i64>>();
    for desc in catalog.tables() {
        for unique in &desc.uniques {
            let kind = IndexKind::Unique { nulls_not_distinct: unique.nulls_not_distinct };
            relation.push(index_row(
                relation_oid(unique.state),
                desc.id,
                &numbers(&unique.columns),
                &[],
                kind,
            ));
        }
        let Some(def) = desc.index() else { continue };
        let (keys, include) = (numbers(&def.key_columns), numbers(&def.include_columns));
        relation.push(index_row(relation_oid(desc.id), def.table, &keys, &include, IndexKind::Plain));
    }
    relation
}

/// What an index of `pg_index` enforces.
#[derive(Clone, Copy, PartialEq)]
enum IndexKind {
    Primary,
    Unique { nulls_not_distinct: bool },
    Plain,
}

/// A row of `pg_index`: the key's and the INCLUDE columns' numbers in the table.
fn index_row(
    index: i64,
    table: crate::state::TableId,
    keys: &[i64],
    include: &[i64],
    kind: IndexKind,
) -> Vec<Option<datafusion::common::ScalarValue>> {
    let all: Vec<String> = keys.iter().chain(include).map(i64::to_string).collect();
    let listed = |each: &str, count: usize| vec![each; count].join(" ");
    vec![
        oid(index),
        oid(relation_oid(table)),
        int(all.len() as i64),
        int(keys.len() as i64),
        boolean(kind != IndexKind::Plain),
        boolean(kind == IndexKind::Unique { nulls_not_distinct: true }),
        boolean(kind == IndexKind::Primary),
        boolean(false),
        boolean(true),
        boolean(false),
        boolean(true),
        boolean(false),
        boolean(true),
        boolean(true),
        boolean(false),
        text(all.join(" ")),
        text(listed("0", all.len())),
        text(listed("0", keys.len())),
        text(listed("0", keys.len())),
        None,
        None,
    ]
}

/// `CREATE INDEX ...` as `pg_get_indexdef` prints an index Sabot keeps.
pub(super) fn index_definition(catalog: &Catalog, desc: &TableDesc) -> Option<String> {
    let def = desc.index()?;
    let table = catalog.table_by_id(def.table)?;
    let names = |columns: &[usize]| -> String {
        let names: Vec<&str> = columns.iter().map(|&i| table.columns[i].name.as_str()).collect();
        names.join(", ")
    };
    let mut sql = format!(
        "CREATE INDEX {} ON {} USING btree ({})",
        desc.name,
        table.qualified_name(),
        names(&def.key_columns)
    );
    if !def.include_columns.is_empty() {
        sql.push_str(&format!(" INCLUDE ({})", names(&def.include_columns)));
    }
    Some(sql)
}

/// `CREATE UNIQUE INDEX ...` as `pg_get_indexdef` prints a UNIQUE constraint's index.
pub(super) fn unique_index_definition(desc: &TableDesc, unique: &crate::catalog::UniqueDef) -> String {
    let names: Vec<&str> = unique.columns.iter().map(|&i| desc.columns[i].name.as_str()).collect();
    let nulls = if unique.nulls_not_distinct { " NULLS NOT DISTINCT" } else { "" };
    format!(
        "CREATE UNIQUE INDEX {} ON {} USING btree ({}){nulls}",
        unique.name,
        desc.qualified_name(),
        names.join(", ")
    )
}

/// `UNIQUE (...)` as `pg_get_constraintdef` prints a UNIQUE constraint.
pub(super) fn unique_constraint_definition(desc: &TableDesc, unique: &crate::catalog::UniqueDef) -> String {
    let names: Vec<&str> = unique.columns.iter().map(|&i| desc.columns[i].name.as_str()).collect();
    let nulls = if unique.nulls_not_distinct { " NULLS NOT DISTINCT" } else { "" };
    format!("UNIQUE{nulls} ({})", names.join(", "))
}

/// `pg_indexes`: every index with its definition, primary keys included.
pub(super) fn index_definitions(catalog: &Catalog) -> Relation {
    let mut relation =
        Relation::new("schemaname:name tablename:name indexname:name tablespace:name indexdef:text");
    for desc in catalog.tables() {
        if has_primary_key(desc) {
            let columns: Vec<&str> =
                desc.primary_key.iter().map(|&i| desc.columns[i].name.as_str()).collect();
            let definition = format!(
                "CREATE UNIQUE INDEX {} ON {} USING btree ({})",
                desc.primary_key_name(),
                desc.qualified_name(),
                columns.join(", ")
            );
            relation.push(vec![
                text(&desc.schema),
                text(&desc.name),
                text(desc.primary_key_name()),
                None,
                text(&definition),
            ]);
        }
        for unique in &desc.uniques {
            relation.push(vec![
                text(&desc.schema),
                text(&desc.name),
                text(&unique.name),
                None,
                text(unique_index_definition(desc, unique)),
            ]);
        }
        if let (Some(def), Some(definition)) = (desc.index(), index_definition(catalog, desc))
            && let Some(table) = catalog.table_by_id(def.table)
        {
            relation.push(vec![
                text(&desc.schema),
                text(&table.name),
                text(&desc.name),
                None,
                text(&definition),
            ]);
        }
    }
    relation
}

/// `pg_constraint`: each table's primary key (`p`), UNIQUE (`u`) and CHECK constraints (`c`).
pub(super) fn constraints(catalog: &Catalog) -> Relation {
    let mut relation = Relation::new(CONSTRAINT_COLUMNS);
    for desc in catalog.tables().filter(|d| has_primary_key(d)) {
        let keys: Vec<i64> = key_numbers(desc);
        relation.push(constraint_row(
            desc,
            primary_key_oid(desc.id),
            &desc.primary_key_name(),
            "p",
            &keys,
            None,
        ));
    }
    for desc in catalog.tables() {
        for unique in desc.uniques.iter().filter(|u| !u.index_only) {
            let columns: Vec<i64> = unique.columns.iter().map(|&i| i as i64 + 1).collect();
            let mut row =
                constraint_row(desc, primary_key_oid(unique.state), &unique.name, "u", &columns, None);
            row[CONINDID] = oid(relation_oid(unique.state));
            relation.push(row);
        }
        for (index, check) in desc.checks.iter().enumerate() {
            let columns: Vec<i64> = check.columns.iter().map(|&i| i as i64 + 1).collect();
            let row = constraint_row(
                desc,
                check_oid(desc.id, index),
                &check.name,
                "c",
                &columns,
                Some(&check.expression),
            );
            relation.push(row);
        }
    }
    relation
}

/// The position of `conindid` in a `pg_constraint` row.
const CONINDID: usize = 9;

fn constraint_row(
    desc: &TableDesc,
    id: i64,
    name: &str,
    kind: &str,
    columns: &[i64],
    expression: Option<&str>,
) -> Vec<Option<datafusion::common::ScalarValue>> {
    let numbers: Vec<String> = columns.iter().map(i64::to_string).collect();
    let index = if kind == "p" { id } else { 0 };
    vec![
        oid(id),
        text(name),
        oid(namespace_oid(&desc.schema)),
        text(kind),
        boolean(false),
        boolean(false),
        boolean(true),
        oid(relation_oid(desc.id)),
        oid(0),
        oid(index),
        oid(0),
        oid(0),
        text(" "),
        text(" "),
        text(" "),
        boolean(true),
        int(0),
        boolean(kind == "c"),
        text(format!("{{{}}}", numbers.join(","))),
        None,
        expression.and_then(text),
    ]
}
