//! The relations of `pg_catalog`, each built from the catalog.

use super::{
    BOOTSTRAP_SUPERUSER_OID, DATABASE_OID, NAME, PG_CATALOG_OID, Relation, boolean, has_primary_key, int,
    namespace_oid, oid, primary_key_oid, relation_oid, role_oid, text,
};
use crate::catalog::{Catalog, TableDesc};
use crate::common::SqlType;

pub const TABLES: [&str; 33] = [
    "pg_settings",
    "pg_am",
    "pg_attrdef",
    "pg_attribute",
    "pg_auth_members",
    "pg_class",
    "pg_collation",
    "pg_constraint",
    "pg_database",
    "pg_description",
    "pg_index",
    "pg_indexes",
    "pg_inherits",
    "pg_matviews",
    "pg_namespace",
    "pg_policy",
    "pg_proc",
    "pg_publication",
    "pg_publication_namespace",
    "pg_publication_rel",
    "pg_rewrite",
    "pg_roles",
    "pg_statistic_ext",
    "pg_tables",
    "pg_trigger",
    "pg_type",
    "pg_user",
    "pg_views",
    "pg_foreign_table",
    "pg_shdescription",
    "pg_enum",
    "pg_extension",
    "pg_depend",
];

/// `pg_catalog.name`, or None.
pub(super) fn relation(catalog: &Catalog, name: &str) -> Option<Relation> {
    Some(match name {
        "pg_namespace" => namespaces(catalog),
        "pg_class" => classes(catalog),
        "pg_attribute" => attributes(catalog),
        "pg_attrdef" => defaults(catalog),
        "pg_type" => types(),
        "pg_am" => access_methods(),
        "pg_database" => databases(),
        "pg_roles" => roles(catalog),
        "pg_user" => users(catalog),
        "pg_tables" => tables(catalog),
        "pg_matviews" => materialized_views(catalog),
        "pg_views" => plain_views(catalog),
        "pg_collation" => collations(),
        "pg_index" => super::keys::indexes(catalog),
        "pg_indexes" => super::keys::index_definitions(catalog),
        "pg_constraint" => super::keys::constraints(catalog),
        "pg_description" => descriptions(catalog),
        "pg_proc" => procedures(catalog),
        _ => empty(name)?,
    })
}

/// The relations Sabot has no objects for yet, with Postgres' columns.
fn empty(name: &str) -> Option<Relation> {
    Some(Relation::new(match name {
        "pg_auth_members" => "roleid:oid member:oid grantor:oid admin_option:bool",
        // Dependencies are Sabot's own (`sabot_catalog`, and DROP's 2BP01).
        "pg_depend" => {
            "classid:oid objid:oid objsubid:int4 refclassid:oid refobjid:oid refobjsubid:int4 deptype:char"
        }
        "pg_shdescription" => "objoid:oid classoid:oid description:text",
        "pg_inherits" => "inhrelid:oid inhparent:oid inhseqno:int4 inhdetachpending:bool",
        "pg_policy" => {
            "oid:oid polname:name polrelid:oid polcmd:char polpermissive:bool polroles:text \
             polqual:text polwithcheck:text"
        }
        "pg_publication" => "oid:oid pubname:name pubowner:oid puballtables:bool",
        "pg_publication_namespace" => "oid:oid pnpubid:oid pnnspid:oid",
        "pg_publication_rel" => "oid:oid prpubid:oid prrelid:oid prqual:text prattrs:text",
        "pg_rewrite" => "oid:oid rulename:name ev_class:oid ev_type:char ev_enabled:char is_instead:bool",
        "pg_statistic_ext" => {
            "oid:oid stxrelid:oid stxname:name stxnamespace:oid stxowner:oid stxstattarget:int4 \
             stxkeys:text stxkind:text[]"
        }
        "pg_trigger" => {
            "oid:oid tgrelid:oid tgparentid:oid tgname:name tgfoid:oid tgtype:int2 tgenabled:char tgisinternal:bool"
        }
        "pg_foreign_table" => "ftrelid:oid ftserver:oid ftoptions:text[]",
        "pg_enum" => "oid:oid enumtypid:oid enumsortorder:float4 enumlabel:name",
        "pg_extension" => {
            "oid:oid extname:name extowner:oid extnamespace:oid extrelocatable:bool extversion:text \
             extconfig:text[] extcondition:text[]"
        }
        _ => return None,
    }))
}

/// `pg_proc`: the SQL functions (`CREATE FUNCTION`); built-in functions are not listed.
fn procedures(catalog: &Catalog) -> Relation {
    let mut relation = Relation::new(
        "oid:oid proname:name pronamespace:oid proowner:oid prolang:oid procost:float4 \
         prorows:float4 provariadic:oid prokind:char prosecdef:bool proleakproof:bool \
         proisstrict:bool proretset:bool provolatile:char proparallel:char pronargs:int2 \
         pronargdefaults:int2 prorettype:oid proargtypes:text proargnames:text[] prosrc:text",
    );
    for function in catalog.functions() {
        let types: Vec<String> =
            function.parameters.iter().map(|p| type_oid(&p.sql_type).to_string()).collect();
        let names: Option<Vec<String>> = function
            .parameters
            .iter()
            .any(|p| p.name.is_some())
            .then(|| function.parameters.iter().map(|p| p.name.clone().unwrap_or_default()).collect());
        let defaults = function.parameters.iter().filter(|p| p.default.is_some()).count();
        relation.push(vec![
            oid(super::function_oid(function.id)),
            text(&function.name),
            oid(namespace_oid(&function.schema)),
            oid(BOOTSTRAP_SUPERUSER_OID),
            oid(SQL_LANGUAGE_OID),
            Some(datafusion::common::ScalarValue::Float32(Some(100.0))),
            Some(datafusion::common::ScalarValue::Float32(Some(0.0))),
            oid(0),
            text("f"),
            boolean(false),
            boolean(false),
            boolean(function.strict),
            boolean(false),
            text(function.volatility.to_string()),
            text("u"),
            int(function.parameters.len() as i64),
            int(defaults as i64),
            oid(type_oid(&function.returns)),
            text(types.join(" ")),
            names.map(|names| super::text_array(&names)),
            text(match &function.body {
                crate::catalog::FunctionBody::Query(query) => query.as_str(),
                crate::catalog::FunctionBody::Return(_) => "",
            }),
        ]);
    }
    relation
}

/// `pg_language.oid` of `sql`.
const SQL_LANGUAGE_OID: i64 = 14;

fn type_oid(sql_type: &SqlType) -> i64 {
    i64::from(sql_type.pg_type().oid())
}

fn namespaces(catalog: &Catalog) -> Relation {
    let mut relation = Relation::new("oid:oid nspname:name nspowner:oid nspacl:text[]");
    let mut names = catalog.schema_names();
    names.extend([NAME.to_string(), "information_schema".into(), crate::batch::system::NAME.into()]);
    names.sort();
    names.dedup();
    for name in names {
        relation.push(vec![oid(namespace_oid(&name)), text(&name), oid(BOOTSTRAP_SUPERUSER_OID), None]);
    }
    relation
}

/// The relations a user can query: tables, materialized views and sources.
fn queryable(catalog: &Catalog) -> impl Iterator<Item = &std::sync::Arc<TableDesc>> {
    catalog.tables().filter(|t| !t.is_sink())
}

fn relkind(desc: &TableDesc) -> &'static str {
    if desc.is_plain_view() {
        "v"
    } else if desc.is_index() {
        "i"
    } else if desc.is_view() {
        "m"
    } else if desc.is_source() {
        "f"
    } else {
        "r"
    }
}

fn classes(catalog: &Catalog) -> Relation {
    let mut relation = Relation::new(
        "oid:oid relname:name relnamespace:oid reltype:oid reloftype:oid relowner:oid relam:oid \
         relfilenode:oid reltablespace:oid relpages:int4 reltuples:float4 relallvisible:int4 \
         reltoastrelid:oid relhasindex:bool relisshared:bool relpersistence:char relkind:char \
         relnatts:int2 relchecks:int2 relhasrules:bool relhastriggers:bool relhassubclass:bool \
         relrowsecurity:bool relforcerowsecurity:bool relispartition:bool relreplident:char \
         relacl:text[] reloptions:text[] relpartbound:text",
    );
    for desc in queryable(catalog) {
        let kind = relkind(desc);
        let columns = attribute_columns(catalog, desc).len() as i64;
        let access_method = match kind {
            "f" | "v" => 0,
            "i" => BTREE_OID,
            _ => HEAP_OID,
        };
        let indexed =
            has_primary_key(desc) || !desc.uniques.is_empty() || !catalog.indexes_on(desc.id).is_empty();
        for unique in &desc.uniques {
            let columns = unique.columns.len() as i64;
            let id = relation_oid(unique.state);
            relation.push(class_row(id, &unique.name, &desc.schema, "i", BTREE_OID, columns, false));
        }
        if indexed {
            let keys = desc.primary_key.len() as i64;
            relation.push(class_row(
                primary_key_oid(desc.id),
                &desc.primary_key_name(),
                &desc.schema,
                "i",
                BTREE_OID,
                keys,
                false,
            ));
        }
        let mut row =
            class_row(relation_oid(desc.id), &desc.name, &desc.schema, kind, access_method, columns, indexed);
        // psql's `\d` reads CHECK constraints only when `relchecks` counts some.
        row[RELCHECKS] = int(desc.checks.len() as i64);
        relation.push(row);
    }
    relation
}

/// The position of `relchecks` in a `pg_class` row.
const RELCHECKS: usize = 18;

/// A row of `pg_class`.
fn class_row(
    id: i64,
    name: &str,
    schema: &str,
    kind: &str,
    access_method: i64,
    columns: i64,
    indexed: bool,
) -> Vec<Option<datafusion::common::ScalarValue>> {
    vec![
        oid(id),
        text(name),
        oid(namespace_oid(schema)),
        oid(0),
        oid(0),
        oid(BOOTSTRAP_SUPERUSER_OID),
        oid(access_method),
        oid(id),
        oid(0),
        int(0),
        int(-1),
        int(0),
        oid(0),
        boolean(indexed),
        boolean(false),
        text("p"),
        text(kind),
        int(columns),
        int(0),
        boolean(false),
        boolean(false),
        boolean(false),
        boolean(false),
        boolean(false),
        boolean(false),
        text("d"),
        None,
        None,
        None,
    ]
}

fn attributes(catalog: &Catalog) -> Relation {
    let mut relation = Relation::new(
        "attrelid:oid attname:name atttypid:oid attstattarget:int4 attlen:int2 attnum:int2 \
         attndims:int4 attcacheoff:int4 atttypmod:int4 attbyval:bool attalign:char \
         attstorage:char attcompression:char attnotnull:bool atthasdef:bool atthasmissing:bool \
         attidentity:char attgenerated:char attisdropped:bool attislocal:bool attinhcount:int4 \
         attcollation:oid attacl:text[] attoptions:text[] attfdwoptions:text[]",
    );
    for desc in queryable(catalog) {
        for (number, column) in attribute_columns(catalog, desc).into_iter().enumerate() {
            let pg_type = type_of(&column.sql_type);
            relation.push(vec![
                oid(relation_oid(desc.id)),
                text(&column.name),
                oid(pg_type.oid),
                int(-1),
                int(pg_type.length),
                int(number as i64 + 1),
                int(i64::from(matches!(column.sql_type, SqlType::Array(_)))),
                int(-1),
                int(type_modifier(&column.sql_type)),
                boolean(pg_type.by_value),
                text(if pg_type.length > 0 { "i" } else { "d" }),
                text(if pg_type.length > 0 { "p" } else { "x" }),
                text(""),
                boolean(!column.nullable),
                boolean(column.default.is_some()),
                boolean(false),
                text(""),
                text(""),
                boolean(false),
                boolean(true),
                int(0),
                oid(pg_type.collation),
                None,
                None,
                None,
            ]);
        }
    }
    relation
}

/// The columns `pg_attribute` lists for a relation: its visible columns; for an index,
/// the table's key and INCLUDE columns, as in Postgres.
fn attribute_columns<'a>(catalog: &'a Catalog, desc: &'a TableDesc) -> Vec<&'a crate::catalog::ColumnDesc> {
    match desc.index() {
        Some(def) => match catalog.table_by_id(def.table) {
            Some(table) => {
                def.key_columns.iter().chain(&def.include_columns).map(|&i| &table.columns[i]).collect()
            }
            None => Vec::new(),
        },
        None => desc.columns.iter().filter(|c| !c.hidden).collect(),
    }
}

/// Column defaults, as their SQL text (what `pg_get_expr` shows).
fn defaults(catalog: &Catalog) -> Relation {
    let mut relation = Relation::new("oid:oid adrelid:oid adnum:int2 adbin:text");
    for desc in queryable(catalog) {
        for (number, column) in attribute_columns(catalog, desc).into_iter().enumerate() {
            if let Some(default) = &column.default {
                let id = relation_oid(desc.id);
                relation.push(vec![
                    oid(id * 1000 + number as i64),
                    oid(id),
                    int(number as i64 + 1),
                    text(default),
                ]);
            }
        }
    }
    relation
}

/// A type's row in `pg_type`.
pub struct PgType {
    pub oid: i64,
    pub name: &'static str,
    pub length: i64,
    pub by_value: bool,
    pub category: &'static str,
    pub element: i64,
    pub array: i64,
    pub collation: i64,
}

const fn base(oid: i64, name: &'static str, length: i64, category: &'static str, array: i64) -> PgType {
    let collation = if matches!(category.as_bytes(), [b'S']) { DEFAULT_COLLATION_OID } else { 0 };
    PgType { oid, name, length, by_value: length > 0 && length <= 8, category, element: 0, array, collation }
}

const fn array(oid: i64, name: &'static str, element: i64) -> PgType {
    PgType { oid, name, length: -1, by_value: false, category: "A", element, array: 0, collation: 0 }
}

const DEFAULT_COLLATION_OID: i64 = 100;
const HEAP_OID: i64 = 2;
/// The btree access method, which every index reports.
const BTREE_OID: i64 = 403;

/// The types Sabot's columns have, and those the catalogs' columns have.
pub const TYPES: [PgType; 39] = [
    base(16, "bool", 1, "B", 1000),
    base(17, "bytea", -1, "U", 1001),
    base(18, "char", 1, "Z", 1002),
    base(19, "name", 64, "S", 1003),
    base(20, "int8", 8, "N", 1016),
    base(21, "int2", 2, "N", 1005),
    base(23, "int4", 4, "N", 1007),
    base(25, "text", -1, "S", 1009),
    base(26, "oid", 4, "N", 1028),
    base(114, "json", -1, "U", 199),
    base(700, "float4", 4, "N", 1021),
    base(701, "float8", 8, "N", 1022),
    base(1042, "bpchar", -1, "S", 1014),
    base(1043, "varchar", -1, "S", 1015),
    base(1082, "date", 4, "D", 1182),
    base(1083, "time", 8, "D", 1183),
    base(1114, "timestamp", 8, "D", 1115),
    base(1184, "timestamptz", 8, "D", 1185),
    base(1186, "interval", 16, "T", 1187),
    base(1700, "numeric", -1, "N", 1231),
    base(2249, "record", -1, "P", 2287),
    base(3802, "jsonb", -1, "U", 3807),
    array(1000, "_bool", 16),
    array(1001, "_bytea", 17),
    array(1005, "_int2", 21),
    array(1007, "_int4", 23),
    array(1009, "_text", 25),
    array(1014, "_bpchar", 1042),
    array(1015, "_varchar", 1043),
    array(1016, "_int8", 20),
    array(1021, "_float4", 700),
    array(1022, "_float8", 701),
    array(1115, "_timestamp", 1114),
    array(1182, "_date", 1082),
    array(1183, "_time", 1083),
    array(1185, "_timestamptz", 1184),
    array(1187, "_interval", 1186),
    array(1231, "_numeric", 1700),
    array(3807, "_jsonb", 3802),
];

/// The `pg_type` row of a column type.
pub fn type_of(sql_type: &SqlType) -> &'static PgType {
    let oid = i64::from(sql_type.pg_type().oid());
    TYPES.iter().find(|t| t.oid == oid).unwrap_or(&TYPES[7])
}

/// `atttypmod`: numeric's precision and scale, and the length of `varchar(n)` and
/// `char(n)`, as Postgres packs them; else -1.
fn type_modifier(sql_type: &SqlType) -> i64 {
    match sql_type {
        SqlType::Numeric { precision, scale } => ((i64::from(*precision) << 16) | i64::from(*scale)) + 4,
        SqlType::Varchar(Some(n)) | SqlType::Char(n) => i64::from(*n) + 4,
        // An array column's modifier is its element's.
        SqlType::Array(element) => type_modifier(element),
        _ => -1,
    }
}

/// A type's input or output function, as `typinput` / `typoutput` name it (drivers tell
/// arrays by `typinput = 'array_in'`).
fn io_function(t: &PgType, direction: &str) -> String {
    let underscored =
        ["numeric", "date", "time", "timestamp", "timestamptz", "interval", "json", "jsonb", "record"];
    if t.category == "A" {
        format!("array_{direction}")
    } else if underscored.contains(&t.name) {
        format!("{}_{direction}", t.name)
    } else {
        format!("{}{direction}", t.name)
    }
}

fn types() -> Relation {
    let mut relation = Relation::new(
        "oid:oid typname:name typnamespace:oid typowner:oid typlen:int2 typbyval:bool typtype:char \
         typcategory:char typispreferred:bool typisdefined:bool typdelim:char typrelid:oid \
         typelem:oid typarray:oid typinput:text typoutput:text typnotnull:bool typbasetype:oid typtypmod:int4 typndims:int4 \
         typcollation:oid typdefault:text",
    );
    for t in &TYPES {
        let kind = if t.oid == 2249 { "p" } else { "b" };
        relation.push(vec![
            oid(t.oid),
            text(t.name),
            oid(PG_CATALOG_OID),
            oid(BOOTSTRAP_SUPERUSER_OID),
            int(t.length),
            boolean(t.by_value),
            text(kind),
            text(t.category),
            boolean(matches!(t.name, "bool" | "text" | "float8" | "oid" | "timestamptz" | "interval")),
            boolean(true),
            text(","),
            oid(0),
            oid(t.element),
            oid(t.array),
            text(io_function(t, "in")),
            text(io_function(t, "out")),
            boolean(false),
            oid(0),
            int(-1),
            int(0),
            oid(t.collation),
            None,
        ]);
    }
    relation
}

fn access_methods() -> Relation {
    let mut relation = Relation::new("oid:oid amname:name amhandler:text amtype:char");
    relation.push(vec![oid(HEAP_OID), text("heap"), text("heap_tableam_handler"), text("t")]);
    relation.push(vec![oid(BTREE_OID), text("btree"), text("bthandler"), text("i")]);
    relation
}

fn collations() -> Relation {
    let mut relation = Relation::new(
        "oid:oid collname:name collnamespace:oid collowner:oid collprovider:char \
         collisdeterministic:bool collencoding:int4 collcollate:text collctype:text",
    );
    let push = |relation: &mut Relation, id: i64, name: &str, provider: &str, encoding: i64| {
        relation.push(vec![
            oid(id),
            text(name),
            oid(PG_CATALOG_OID),
            oid(BOOTSTRAP_SUPERUSER_OID),
            text(provider),
            boolean(true),
            int(encoding),
            None,
            None,
        ])
    };
    push(&mut relation, DEFAULT_COLLATION_OID, "default", "d", -1);
    push(&mut relation, 950, "C", "c", -1);
    relation
}

fn databases() -> Relation {
    let mut relation = Relation::new(
        "oid:oid datname:name datdba:oid encoding:int4 datlocprovider:char datistemplate:bool \
         datallowconn:bool datconnlimit:int4 datfrozenxid:int8 dattablespace:oid datcollate:text \
         datctype:text daticulocale:text daticurules:text datcollversion:text datacl:text[]",
    );
    relation.push(vec![
        oid(DATABASE_OID),
        text(super::DATABASE_NAME),
        oid(BOOTSTRAP_SUPERUSER_OID),
        int(UTF8_ENCODING),
        text("c"),
        boolean(false),
        boolean(true),
        int(-1),
        int(0),
        oid(1663),
        text("C.UTF-8"),
        text("C.UTF-8"),
        None,
        None,
        None,
        None,
    ]);
    relation
}

/// Postgres' number for the UTF8 encoding.
pub const UTF8_ENCODING: i64 = 6;

fn roles(catalog: &Catalog) -> Relation {
    let mut relation = Relation::new(
        "oid:oid rolname:name rolsuper:bool rolinherit:bool rolcreaterole:bool rolcreatedb:bool \
         rolcanlogin:bool rolreplication:bool rolconnlimit:int4 rolpassword:text \
         rolvaliduntil:timestamptz rolbypassrls:bool rolconfig:text[]",
    );
    for role in catalog.roles() {
        relation.push(vec![
            oid(role_oid(&role.name)),
            text(&role.name),
            boolean(role.superuser),
            boolean(true),
            boolean(role.superuser),
            boolean(role.superuser),
            boolean(role.login),
            boolean(false),
            int(-1),
            text("********"),
            None,
            boolean(role.superuser),
            None,
        ]);
    }
    relation
}

fn users(catalog: &Catalog) -> Relation {
    let mut relation = Relation::new(
        "usename:name usesysid:oid usecreatedb:bool usesuper:bool userepl:bool usebypassrls:bool \
         passwd:text valuntil:timestamptz useconfig:text[]",
    );
    for role in catalog.roles().filter(|r| r.login) {
        relation.push(vec![
            text(&role.name),
            oid(role_oid(&role.name)),
            boolean(role.superuser),
            boolean(role.superuser),
            boolean(false),
            boolean(role.superuser),
            text("********"),
            None,
            None,
        ]);
    }
    relation
}

fn tables(catalog: &Catalog) -> Relation {
    let mut relation = Relation::new(
        "schemaname:name tablename:name tableowner:name tablespace:name hasindexes:bool \
         hasrules:bool hastriggers:bool rowsecurity:bool",
    );
    for desc in queryable(catalog).filter(|d| relkind(d) == "r") {
        relation.push(vec![
            text(&desc.schema),
            text(&desc.name),
            text(crate::catalog::SUPERUSER),
            None,
            boolean(has_primary_key(desc)),
            boolean(false),
            boolean(false),
            boolean(false),
        ]);
    }
    relation
}

fn materialized_views(catalog: &Catalog) -> Relation {
    let mut relation = Relation::new(
        "schemaname:name matviewname:name matviewowner:name tablespace:name hasindexes:bool \
         ispopulated:bool definition:text",
    );
    for desc in queryable(catalog).filter(|d| d.is_materialized_view()) {
        let definition = view_definition(desc);
        relation.push(vec![
            text(&desc.schema),
            text(&desc.name),
            text(crate::catalog::SUPERUSER),
            None,
            boolean(false),
            boolean(true),
            definition.map(|d| datafusion::common::ScalarValue::Utf8(Some(d))),
        ]);
    }
    relation
}

fn plain_views(catalog: &Catalog) -> Relation {
    let mut relation = Relation::new("schemaname:name viewname:name viewowner:name definition:text");
    for desc in queryable(catalog).filter(|d| d.is_plain_view()) {
        relation.push(vec![
            text(&desc.schema),
            text(&desc.name),
            text(crate::catalog::SUPERUSER),
            view_definition(desc).map(|d| datafusion::common::ScalarValue::Utf8(Some(d))),
        ]);
    }
    relation
}

/// The object id of `pg_class`, the catalog relations' comments belong to.
pub(super) const PG_CLASS_OID: i64 = 1259;

/// `pg_description`: the `COMMENT ON` texts of relations (objsubid 0) and columns.
fn descriptions(catalog: &Catalog) -> Relation {
    let mut relation = Relation::new("objoid:oid classoid:oid objsubid:int4 description:text");
    for ((table, column), comment) in catalog.comments() {
        relation.push(vec![
            oid(relation_oid(*table)),
            oid(PG_CLASS_OID),
            int(i64::from(*column)),
            text(comment),
        ]);
    }
    relation
}

/// A view's (or materialized view's) query as `pg_get_viewdef` prints it.
pub(super) fn view_definition(desc: &TableDesc) -> Option<String> {
    let query = desc.plain_view.as_ref().map(|v| &v.query).or(desc.view.as_ref().map(|v| &v.query))?;
    Some(format!(" {query};"))
}

/// `pg_settings`: the session's variables and the server's read-only ones.
pub(super) fn settings(session: &[super::Setting]) -> Relation {
    let mut relation = Relation::new(
        "name:text setting:text unit:text category:text short_desc:text extra_desc:text context:text \
         vartype:text source:text min_val:text max_val:text enumvals:text[] boot_val:text reset_val:text \
         sourcefile:text sourceline:int4 pending_restart:bool",
    );
    for (i, setting) in super::all_settings(session).iter().enumerate() {
        let context = if i < session.len() { "user" } else { "internal" };
        relation.push(vec![
            text(&setting.name),
            text(&setting.value),
            None,
            text("Sabot"),
            text(&setting.description),
            None,
            text(context),
            text("string"),
            text("default"),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            boolean(false),
        ]);
    }
    relation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relations_the_planner_takes_as_empty_are_empty() {
        let catalog = Catalog::new();
        for name in crate::sql::pg_compat::EMPTY_CATALOGS {
            assert!(TABLES.contains(&name), "{name}");
            let relation = relation(&catalog, name).expect("a pg_catalog relation");
            assert!(relation.rows.is_empty(), "{name}");
        }
    }
}
