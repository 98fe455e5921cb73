//! The functions of Postgres' catalog and session that tools call: `version()`,
//! `current_user`, `current_schema()`, `pg_get_userbyid`, `pg_table_is_visible`,
//! `format_type`, ... — each registered for one statement, with what it looks up
//! captured from the catalog and the session then.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, GenericListArray, Int32Array, Int64Array, StringArray, new_null_array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

use super::relations::{TYPES, UTF8_ENCODING};
use super::{NAME, relation_oid, role_oid};
use crate::catalog::Catalog;
use crate::state::Snapshot;

/// What a session's functions answer.
pub struct SessionInfo<'a> {
    /// The session's role (None: no session, e.g. planning a view at start-up; the
    /// session functions are then not registered).
    pub user: Option<&'a str>,
    /// The schema unqualified names resolve in (`current_schema()`).
    pub schema: &'a str,
    /// The session's variables (`current_setting`).
    pub settings: &'a [super::Setting],
    /// The connection's ends (`inet_server_port()`, ...); None without a connection.
    pub server: Option<std::net::SocketAddr>,
    pub client: Option<std::net::SocketAddr>,
}

/// The server's version as `version()` shows it: Postgres' form, which tools parse.
pub fn version() -> String {
    format!(
        "PostgreSQL {} on {}-{}, compiled by rustc, 64-bit",
        crate::common::SERVER_VERSION,
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

pub(super) type Body = Arc<dyn Fn(&[ArrayRef], usize) -> datafusion::common::Result<ArrayRef> + Send + Sync>;

/// One function: its name, argument types and body over whole arrays.
struct CatalogFunction {
    name: &'static str,
    signature: Signature,
    returns: DataType,
    body: Body,
}

impl std::fmt::Debug for CatalogFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogFunction").field("name", &self.name).finish_non_exhaustive()
    }
}

// Functions are told apart by name: one of each is registered per statement.
impl PartialEq for CatalogFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for CatalogFunction {}

impl std::hash::Hash for CatalogFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for CatalogFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        Ok(ColumnarValue::Array((self.body)(&arrays, rows)?))
    }
}

pub(super) fn function(
    name: &'static str,
    arguments: Vec<Vec<DataType>>,
    returns: DataType,
    body: Body,
) -> ScalarUDF {
    let signature = match arguments.as_slice() {
        [] => Signature::nullary(Volatility::Stable),
        [one] => Signature::exact(one.clone(), Volatility::Stable),
        _ => Signature::one_of(arguments.into_iter().map(TypeSignature::Exact).collect(), Volatility::Stable),
    };
    function_with_signature(name, signature, returns, body)
}

pub(super) fn function_with_signature(
    name: &'static str,
    signature: Signature,
    returns: DataType,
    body: Body,
) -> ScalarUDF {
    ScalarUDF::new_from_impl(CatalogFunction { name, signature, returns, body })
}

/// A function of no arguments returning `value` on every row.
fn constant(name: &'static str, value: String) -> ScalarUDF {
    function(
        name,
        Vec::new(),
        DataType::Utf8,
        Arc::new(move |_, rows| Ok(Arc::new(StringArray::from(vec![value.as_str(); rows])) as ArrayRef)),
    )
}

/// A text function of one `oid` (and any further arguments, ignored): `lookup()`, made
/// once per call (catalog lookups are built only by statements that use them), answers
/// each oid.
fn by_oid<M, F>(name: &'static str, more: Vec<DataType>, lookup: M) -> ScalarUDF
where
    M: Fn() -> F + Send + Sync + 'static,
    F: Fn(i64) -> Option<String>,
{
    let mut arguments = vec![vec![DataType::Int64]];
    if !more.is_empty() {
        arguments.push([vec![DataType::Int64], more].concat());
    }
    function(
        name,
        arguments,
        DataType::Utf8,
        Arc::new(move |args, _| {
            let oids = args[0].as_primitive::<Int64Type>();
            let lookup = lookup();
            Ok(Arc::new(oids.iter().map(|o| o.and_then(&lookup)).collect::<StringArray>()) as ArrayRef)
        }),
    )
}

/// Registers the catalog and session functions in `ctx`; `snapshot` is what the
/// statement reads (the relation size functions measure it).
pub fn register(
    ctx: &SessionContext,
    catalog: &Arc<Catalog>,
    snapshot: &Arc<dyn Snapshot>,
    session: &SessionInfo<'_>,
) {
    register_sizes(ctx, catalog, snapshot);
    super::tool_functions::register(ctx, catalog, snapshot);
    ctx.register_udf(current_setting(session.settings));
    ctx.register_udf(constant("version", version()));
    if let Some(user) = session.user {
        for name in ["current_user", "session_user", "current_role"] {
            ctx.register_udf(constant(name, user.to_string()));
        }
    }
    ctx.register_udf(constant("current_database", super::DATABASE_NAME.to_string()));
    ctx.register_udf(constant("current_catalog", super::DATABASE_NAME.to_string()));
    ctx.register_udf(constant("current_schema", session.schema.to_string()));
    ctx.register_udf(current_schemas(session.schema));
    let ends = [
        ("inet_server_addr", "inet_server_port", session.server),
        ("inet_client_addr", "inet_client_port", session.client),
    ];
    for (address_function, port_function, address) in ends {
        let ip = address.map(|a| a.ip().to_string());
        ctx.register_udf(function(
            address_function,
            Vec::new(),
            DataType::Utf8,
            Arc::new(move |_, rows| Ok(Arc::new(StringArray::from(vec![ip.as_deref(); rows])) as ArrayRef)),
        ));
        let port = address.map(|a| i32::from(a.port()));
        ctx.register_udf(function(
            port_function,
            Vec::new(),
            DataType::Int32,
            Arc::new(move |_, rows| Ok(Arc::new(Int32Array::from(vec![port; rows])) as ArrayRef)),
        ));
    }

    let roles = catalog.clone();
    ctx.register_udf(by_oid("pg_get_userbyid", Vec::new(), move || {
        let roles: HashMap<i64, String> =
            roles.roles().map(|r| (role_oid(&r.name), r.name.clone())).collect();
        move |oid| Some(roles.get(&oid).cloned().unwrap_or_else(|| format!("unknown (OID={oid})")))
    }));
    ctx.register_udf(format_type());
    ctx.register_udf(by_oid("pg_encoding_to_char", Vec::new(), || {
        |encoding| Some(if encoding == UTF8_ENCODING { "UTF8" } else { "" }.to_string())
    }));
    // Defaults are kept as SQL text: the expression is its own text.
    ctx.register_udf(function(
        "pg_get_expr",
        vec![vec![DataType::Utf8, DataType::Int64], vec![DataType::Utf8, DataType::Int64, DataType::Boolean]],
        DataType::Utf8,
        Arc::new(|args, _| Ok(args[0].clone())),
    ));
    ctx.register_udf(table_is_visible(catalog, session.schema));
    register_object_names(ctx, catalog, session.schema);
    register_key_definitions(ctx, catalog);
    ctx.register_udf(view_definitions(catalog));
    register_privileges_and_functions(ctx, catalog);
    register_descriptions(ctx, catalog);
}

/// `obj_description(oid [, catalog])` and `col_description(oid, column)`: the `COMMENT ON`
/// texts; `shobj_description` (databases, roles) is always NULL.
fn register_descriptions(ctx: &SessionContext, catalog: &Arc<Catalog>) {
    let comments: Arc<HashMap<(i64, i64), String>> = Arc::new(
        catalog
            .comments()
            .map(|((table, column), text)| ((relation_oid(*table), i64::from(*column)), text.clone()))
            .collect(),
    );
    let by_column = comments.clone();
    ctx.register_udf(function(
        "obj_description",
        vec![vec![DataType::Int64], vec![DataType::Int64, DataType::Utf8]],
        DataType::Utf8,
        Arc::new(move |args, _| {
            let oids = args[0].as_primitive::<Int64Type>();
            let of_class =
                |row: usize| args.get(1).is_none_or(|c| c.as_string::<i32>().value(row) == "pg_class");
            let values = oids.iter().enumerate().map(|(row, oid)| {
                let oid = oid.filter(|_| of_class(row))?;
                comments.get(&(oid, 0)).cloned()
            });
            Ok(Arc::new(values.collect::<StringArray>()) as ArrayRef)
        }),
    ));
    ctx.register_udf(function(
        "col_description",
        vec![vec![DataType::Int64, DataType::Int32], vec![DataType::Int64, DataType::Int64]],
        DataType::Utf8,
        Arc::new(move |args, _| {
            let oids = args[0].as_primitive::<Int64Type>();
            let columns = datafusion::arrow::compute::cast(&args[1], &DataType::Int64)?;
            let columns = columns.as_primitive::<Int64Type>();
            let values = oids.iter().zip(columns.iter()).map(|(oid, column)| match (oid, column) {
                (Some(oid), Some(column)) if column > 0 => by_column.get(&(oid, column)).cloned(),
                _ => None,
            });
            Ok(Arc::new(values.collect::<StringArray>()) as ArrayRef)
        }),
    ));
    ctx.register_udf(function(
        "shobj_description",
        vec![vec![DataType::Int64, DataType::Utf8]],
        DataType::Utf8,
        Arc::new(|_, rows| Ok(new_null_array(&DataType::Utf8, rows))),
    ));
}

/// `pg_total_relation_size(oid)`, `pg_table_size`, `pg_relation_size`, `pg_indexes_size`:
/// the bytes of the relation's rows (or of its indexes' entries) as the state store holds
/// them (keys and values, before the store's own compression); the total adds a
/// materialized view's operator state and the relation's indexes. `pg_size_pretty(bytes)`
/// as Postgres prints it.
fn register_sizes(ctx: &SessionContext, catalog: &Arc<Catalog>, snapshot: &Arc<dyn Snapshot>) {
    let sizes = [
        ("pg_total_relation_size", Size::Total),
        ("pg_table_size", Size::Rows),
        ("pg_relation_size", Size::Rows),
        ("pg_indexes_size", Size::Indexes),
    ];
    for (name, size) in sizes {
        let (catalog, snapshot) = (catalog.clone(), snapshot.clone());
        ctx.register_udf(function(
            name,
            vec![vec![DataType::Int64]],
            DataType::Int64,
            Arc::new(move |args, _| {
                let tables: HashMap<i64, &crate::catalog::TableDesc> =
                    catalog.tables().map(|t| (relation_oid(t.id), t.as_ref())).collect();
                let mut out = Vec::with_capacity(args[0].len());
                for oid in args[0].as_primitive::<Int64Type>().iter() {
                    let bytes = match oid.and_then(|oid| tables.get(&oid)) {
                        Some(desc) => Some(stored_bytes(&catalog, desc, snapshot.as_ref(), size)?),
                        None => None,
                    };
                    out.push(bytes);
                }
                Ok(Arc::new(Int64Array::from(out)) as ArrayRef)
            }),
        ));
    }
    ctx.register_udf(function(
        "pg_size_pretty",
        vec![vec![DataType::Int64]],
        DataType::Utf8,
        Arc::new(|args, _| {
            let bytes = args[0].as_primitive::<Int64Type>();
            Ok(Arc::new(bytes.iter().map(|b| b.map(size_pretty)).collect::<StringArray>()) as ArrayRef)
        }),
    ));
}

/// Bytes stored under a relation's id (and its operator state's ids, `with_state`).
/// What a size function counts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Size {
    Rows,
    Indexes,
    Total,
}

pub(super) fn stored_bytes(
    catalog: &Catalog,
    desc: &crate::catalog::TableDesc,
    snapshot: &dyn Snapshot,
    size: Size,
) -> datafusion::common::Result<i64> {
    let indexes = catalog.indexes_on(desc.id);
    let mut tables = Vec::new();
    if size != Size::Indexes {
        tables.push(desc.id);
    }
    if size == Size::Total {
        tables.extend(desc.view.iter().flat_map(|v| v.state_tables.iter().copied()));
    }
    if size != Size::Rows {
        tables.extend(indexes.iter().map(|i| i.id));
        tables.extend(desc.uniques.iter().map(|u| u.state));
    }
    let mut total = 0usize;
    for table in tables {
        snapshot
            .scan(table, &mut |key, value| {
                total += key.len() + value.len();
                Ok(())
            })
            .map_err(|e| datafusion::error::DataFusionError::from(crate::common::Error::from(e)))?;
    }
    Ok(i64::try_from(total).unwrap_or(i64::MAX))
}

/// Postgres' `pg_size_pretty`: bytes below 10 kB, then the largest unit (kB, MB, GB, TB,
/// PB) that keeps the number below 20480 halves, rounded half away from zero.
fn size_pretty(bytes: i64) -> String {
    const LIMIT: i64 = 10 * 1024;
    const HALVES_LIMIT: i64 = LIMIT * 2 - 1;
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes.abs() < LIMIT {
        return format!("{bytes} bytes");
    }
    // Halves of the unit: one bit more than the unit keeps, for rounding.
    let mut halves = bytes >> 9;
    for (i, unit) in UNITS.iter().enumerate() {
        if halves.abs() < HALVES_LIMIT || i == UNITS.len() - 1 {
            let rounded = (halves + if halves < 0 { -1 } else { 1 }) / 2;
            return format!("{rounded} {unit}");
        }
        halves >>= 10;
    }
    unreachable!("the last unit returns")
}

/// `current_schemas(include_implicit)`: the search path, with `pg_catalog` first when asked.
fn current_schemas(schema: &str) -> ScalarUDF {
    let schema = schema.to_string();
    let item = Arc::new(Field::new_list_field(DataType::Utf8, true));
    function(
        "current_schemas",
        vec![vec![DataType::Boolean]],
        DataType::List(item.clone()),
        Arc::new(move |args, _| {
            let implicit = args[0].as_boolean();
            let lists: Vec<Vec<&str>> = implicit
                .iter()
                .map(|i| if i == Some(true) { vec![NAME, schema.as_str()] } else { vec![schema.as_str()] })
                .collect();
            let values: StringArray = lists.iter().flatten().map(|s| Some(*s)).collect();
            let offsets = OffsetBuffer::from_lengths(lists.iter().map(Vec::len));
            Ok(Arc::new(GenericListArray::<i32>::try_new(item.clone(), offsets, Arc::new(values), None)?)
                as ArrayRef)
        }),
    )
}

/// `format_type(type_oid, typmod)`: the type's SQL name (`numeric(10,2)`).
fn format_type() -> ScalarUDF {
    function(
        "format_type",
        vec![vec![DataType::Int64, DataType::Int64]],
        DataType::Utf8,
        Arc::new(|args, _| {
            let (oids, modifiers) =
                (args[0].as_primitive::<Int64Type>(), args[1].as_primitive::<Int64Type>());
            let names = oids.iter().zip(modifiers.iter()).map(|(oid, modifier)| {
                let modifier = modifier.and_then(|m| i32::try_from(m).ok()).unwrap_or(-1);
                Some(type_name(oid?, modifier).unwrap_or_else(|| "???".to_string()))
            });
            Ok(Arc::new(names.collect::<StringArray>()) as ArrayRef)
        }),
    )
}

/// The SQL name of type `oid` with modifier `modifier`, as Postgres' `format_type` prints it.
fn type_name(oid: i64, modifier: i32) -> Option<String> {
    let pg_type = TYPES.iter().find(|t| t.oid == oid)?;
    if pg_type.element != 0 {
        return Some(format!("{}[]", type_name(pg_type.element, modifier)?));
    }
    Some(
        match pg_type.name {
            "numeric" if modifier >= 4 => {
                let packed = modifier - 4;
                return Some(format!("numeric({},{})", packed >> 16, packed & 0xffff));
            }
            "varchar" if modifier >= 4 => return Some(format!("character varying({})", modifier - 4)),
            "bpchar" if modifier >= 4 => return Some(format!("character({})", modifier - 4)),
            "bool" => "boolean",
            "int2" => "smallint",
            "int4" => "integer",
            "int8" => "bigint",
            "float4" => "real",
            "float8" => "double precision",
            "time" => "time without time zone",
            "timestamp" => "timestamp without time zone",
            "timestamptz" => "timestamp with time zone",
            "bpchar" => "character",
            "varchar" => "character varying",
            "char" => "\"char\"",
            other => other,
        }
        .to_string(),
    )
}

/// `pg_table_is_visible(oid)`: the relation (or primary key index) is in the session's schema.
fn table_is_visible(catalog: &Arc<Catalog>, schema: &str) -> ScalarUDF {
    let (catalog, schema) = (catalog.clone(), schema.to_string());
    function(
        "pg_table_is_visible",
        vec![vec![DataType::Int64]],
        DataType::Boolean,
        Arc::new(move |args, _| {
            let mut visible: HashSet<i64> = HashSet::new();
            for table in catalog.tables().filter(|t| t.schema == schema) {
                visible.insert(relation_oid(table.id));
                if super::has_primary_key(table) {
                    visible.insert(super::primary_key_oid(table.id));
                }
            }
            let oids = args[0].as_primitive::<Int64Type>();
            Ok(Arc::new(oids.iter().map(|o| o.map(|o| visible.contains(&o))).collect::<BooleanArray>())
                as ArrayRef)
        }),
    )
}

/// What `::regclass` and `::regnamespace` do (see `sql::pg_compat`): `to_regclass(name)`
/// is the relation's oid (NULL when there is none), `sabot_regclass_name(oid)` the name it
/// prints as (schema-qualified outside the session's schema), `sabot_namespace_name(oid)`
/// the schema's name.
fn register_object_names(ctx: &SessionContext, catalog: &Arc<Catalog>, schema: &str) {
    for strict in [false, true] {
        ctx.register_udf(regclass_of_name(catalog, schema, strict));
    }
    let (relations, session_schema) = (catalog.clone(), schema.to_string());
    ctx.register_udf(by_oid("sabot_regclass_name", Vec::new(), move || {
        let names: HashMap<i64, String> = relation_names(&relations)
            .into_iter()
            .map(|(oid, schema, name)| {
                let visible = schema == session_schema || schema == NAME;
                (oid, if visible { name } else { format!("{schema}.{name}") })
            })
            .collect();
        move |oid| Some(names.get(&oid).cloned().unwrap_or_else(|| oid.to_string()))
    }));
    let schemas = catalog.clone();
    ctx.register_udf(by_oid("sabot_namespace_name", Vec::new(), move || {
        let names: HashMap<i64, String> = schemas
            .schema_names()
            .into_iter()
            .chain([NAME.to_string()])
            .map(|name| (super::namespace_oid(&name), name))
            .collect();
        move |oid| Some(names.get(&oid).cloned().unwrap_or_else(|| oid.to_string()))
    }));
}

/// `to_regclass(name)`: the relation's oid, or NULL; strict, `sabot_regclass(name)` (what
/// `'name'::regclass` becomes) fails with 42P01 instead. A name may also be an oid
/// written out (`'16385'::regclass`).
fn regclass_of_name(catalog: &Arc<Catalog>, schema: &str, strict: bool) -> ScalarUDF {
    let (relations, session_schema) = (catalog.clone(), schema.to_string());
    function(
        if strict { "sabot_regclass" } else { "to_regclass" },
        vec![vec![DataType::Utf8]],
        DataType::Int64,
        Arc::new(move |args, _| {
            let relations = relation_names(&relations);
            let oids: HashMap<(&str, &str), i64> = relations
                .iter()
                .map(|(oid, schema, name)| ((schema.as_str(), name.as_str()), *oid))
                .collect();
            let mut found = Vec::with_capacity(args[0].len());
            for name in args[0].as_string::<i32>().iter() {
                let Some(name) = name else {
                    found.push(None);
                    continue;
                };
                let oid = match name.parse::<i64>() {
                    Ok(oid) => Some(oid),
                    Err(_) => {
                        match name.split_once('.') {
                            Some((schema, relation)) => oids
                                .get(&(identifier(schema).as_str(), identifier(relation).as_str()))
                                .copied(),
                            // pg_catalog is searched first, as in Postgres.
                            None => {
                                let relation = identifier(name);
                                oids.get(&(NAME, relation.as_str()))
                                    .or_else(|| oids.get(&(session_schema.as_str(), relation.as_str())))
                                    .copied()
                            }
                        }
                    }
                };
                if oid.is_none() && strict {
                    return Err(datafusion::error::DataFusionError::from(crate::common::Error::new(
                        crate::common::SqlState::UndefinedTable,
                        format!("relation \"{name}\" does not exist"),
                    )));
                }
                found.push(oid);
            }
            Ok(Arc::new(datafusion::arrow::array::Int64Array::from(found)) as ArrayRef)
        }),
    )
}

/// `(oid, schema, name)` of every relation in `pg_class`: tables, materialized views,
/// sources and primary key indexes; and of `pg_catalog`'s relations (Postgres' oids, which
/// tools compare `classoid` with).
fn relation_names(catalog: &Catalog) -> Vec<(i64, String, String)> {
    let mut relations: Vec<(i64, String, String)> = super::TABLES
        .iter()
        .map(|name| (super::catalog_relation_oid(name), NAME.to_string(), name.to_string()))
        .collect();
    for desc in catalog.tables().filter(|t| !t.is_sink()) {
        relations.push((relation_oid(desc.id), desc.schema.clone(), desc.name.clone()));
        if super::has_primary_key(desc) {
            relations.push((super::primary_key_oid(desc.id), desc.schema.clone(), desc.primary_key_name()));
        }
        for unique in &desc.uniques {
            relations.push((relation_oid(unique.state), desc.schema.clone(), unique.name.clone()));
        }
    }
    relations
}

/// An identifier as written in a regclass name: `"Quoted"` as is, else lower-cased.
fn identifier(text: &str) -> String {
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => text.to_lowercase(),
    }
}

/// `pg_get_indexdef(oid [, column, pretty])` of primary keys and indexes, and
/// `pg_get_constraintdef(oid [, pretty])` of primary keys and CHECK constraints.
fn register_key_definitions(ctx: &SessionContext, catalog: &Arc<Catalog>) {
    let tables = catalog.clone();
    let more = vec![DataType::Int64, DataType::Boolean];
    ctx.register_udf(by_oid("pg_get_indexdef", more, move || {
        let mut indexes: HashMap<i64, String> = primary_keys(&tables)
            .map(|(id, desc, columns)| {
                let name = desc.primary_key_name();
                (
                    id,
                    format!(
                        "CREATE UNIQUE INDEX {name} ON {} USING btree ({columns})",
                        desc.qualified_name()
                    ),
                )
            })
            .collect();
        for desc in tables.tables() {
            if let Some(definition) = super::keys::index_definition(&tables, desc) {
                indexes.insert(relation_oid(desc.id), definition);
            }
            for unique in &desc.uniques {
                let definition = super::keys::unique_index_definition(desc, unique);
                indexes.insert(relation_oid(unique.state), definition);
            }
        }
        move |oid| indexes.get(&oid).cloned()
    }));
    let tables = catalog.clone();
    ctx.register_udf(by_oid("pg_get_constraintdef", vec![DataType::Boolean], move || {
        let mut constraints: HashMap<i64, String> =
            primary_keys(&tables).map(|(id, _, columns)| (id, format!("PRIMARY KEY ({columns})"))).collect();
        for desc in tables.tables() {
            for (index, check) in desc.checks.iter().enumerate() {
                constraints.insert(super::check_oid(desc.id, index), format!("CHECK ({})", check.expression));
            }
            for unique in desc.uniques.iter().filter(|u| !u.index_only) {
                let definition = super::keys::unique_constraint_definition(desc, unique);
                constraints.insert(super::primary_key_oid(unique.state), definition);
            }
        }
        move |oid| constraints.get(&oid).cloned()
    }));
}

/// `pg_get_viewdef(oid [, pretty])`: a view's or materialized view's query.
fn view_definitions(catalog: &Arc<Catalog>) -> ScalarUDF {
    let views = catalog.clone();
    by_oid("pg_get_viewdef", vec![DataType::Boolean], move || {
        let definitions: HashMap<i64, String> = views
            .tables()
            .filter_map(|desc| Some((relation_oid(desc.id), super::relations::view_definition(desc)?)))
            .collect();
        move |oid| definitions.get(&oid).cloned()
    })
}

/// Each primary key: its object id, its table, and its columns as SQL lists them.
fn primary_keys(catalog: &Catalog) -> impl Iterator<Item = (i64, &crate::catalog::TableDesc, String)> {
    catalog.tables().filter(|d| super::has_primary_key(d)).map(|desc| {
        let columns: Vec<&str> = desc.primary_key.iter().map(|&i| desc.columns[i].name.as_str()).collect();
        (super::primary_key_oid(desc.id), desc.as_ref(), columns.join(", "))
    })
}

/// `pg_get_function_result` / `_arguments` / `_identity_arguments` of a SQL function's oid.
fn register_function_descriptions(ctx: &SessionContext, catalog: &Arc<Catalog>) {
    type Describe = fn(&crate::catalog::FunctionDesc) -> String;
    let descriptions: [(&'static str, Describe); 3] = [
        ("pg_get_function_result", |f| crate::catalog::type_text(&f.returns)),
        ("pg_get_function_arguments", |f| f.arguments_text(true)),
        ("pg_get_function_identity_arguments", |f| f.arguments_text(false)),
    ];
    for (name, describe) in descriptions {
        let catalog = catalog.clone();
        ctx.register_udf(by_oid(name, Vec::new(), move || {
            let catalog = catalog.clone();
            move |oid| {
                let function = catalog.functions().find(|f| super::function_oid(f.id) == oid)?;
                Some(describe(function))
            }
        }));
    }
}

/// What tools ask besides: privileges (every role may use every object: Sabot does not
/// check privileges yet, see `engine::roles`), functions (`pg_proc` lists the SQL functions:
/// see `register_function_descriptions`), `quote_ident` (psql's tab completion), `pg_backend_pid()`.
fn register_privileges_and_functions(ctx: &SessionContext, catalog: &Arc<Catalog>) {
    let text = || DataType::Utf8;
    let privileges: [(&'static str, usize); 8] = [
        ("has_table_privilege", 3),
        ("has_schema_privilege", 3),
        ("has_database_privilege", 3),
        ("has_column_privilege", 4),
        ("has_function_privilege", 3),
        ("has_sequence_privilege", 3),
        ("has_any_column_privilege", 3),
        ("pg_has_role", 3),
    ];
    for (name, most) in privileges {
        // (object, privilege) or (role, object, privilege), objects by name or oid.
        let mut forms = Vec::new();
        for arguments in (most - 1)..=most {
            for by_oid in [false, true] {
                let object = if by_oid { DataType::Int64 } else { text() };
                let mut form = vec![text(); arguments];
                form[arguments - 2] = object;
                forms.push(form);
            }
        }
        ctx.register_udf(function(
            name,
            forms,
            DataType::Boolean,
            Arc::new(|_, rows| Ok(Arc::new(BooleanArray::from(vec![true; rows])) as ArrayRef)),
        ));
    }
    ctx.register_udf(function(
        "pg_function_is_visible",
        vec![vec![DataType::Int64]],
        DataType::Boolean,
        Arc::new(|_, rows| Ok(Arc::new(BooleanArray::from(vec![true; rows])) as ArrayRef)),
    ));
    register_function_descriptions(ctx, catalog);
    ctx.register_udf(function(
        "quote_ident",
        vec![vec![text()]],
        text(),
        Arc::new(|args, _| {
            let quoted = args[0].as_string::<i32>().iter().map(|name| name.map(quote_ident));
            Ok(Arc::new(quoted.collect::<StringArray>()) as ArrayRef)
        }),
    ));
    let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    ctx.register_udf(function(
        "pg_backend_pid",
        Vec::new(),
        DataType::Int32,
        Arc::new(move |_, rows| {
            Ok(Arc::new(datafusion::arrow::array::Int32Array::from(vec![pid; rows])) as ArrayRef)
        }),
    ));
}

/// An identifier as SQL must write it: as is when lower-case letters, digits and `_`
/// (not starting with a digit), else double-quoted. (Postgres also quotes reserved
/// words; not yet here.)
use crate::common::pg_text::quote_ident;

/// `current_setting(name [, missing_ok])`: a session variable or a read-only server
/// setting; an unknown name is 42704 (NULL with `missing_ok`).
fn current_setting(session: &[super::Setting]) -> ScalarUDF {
    let values: HashMap<String, String> =
        super::all_settings(session).into_iter().map(|s| (s.name.to_lowercase(), s.value)).collect();
    function(
        "current_setting",
        vec![vec![DataType::Utf8], vec![DataType::Utf8, DataType::Boolean]],
        DataType::Utf8,
        Arc::new(move |args, _| {
            let missing_ok = args.get(1).map(|a| a.as_boolean().clone());
            let mut out = Vec::with_capacity(args[0].len());
            for (i, name) in args[0].as_string::<i32>().iter().enumerate() {
                let Some(name) = name else {
                    out.push(None);
                    continue;
                };
                match values.get(&name.to_lowercase()) {
                    Some(value) => out.push(Some(value.clone())),
                    None if missing_ok.as_ref().is_some_and(|m| m.value(i)) => out.push(None),
                    None => {
                        return Err(datafusion::error::DataFusionError::from(crate::common::Error::new(
                            crate::common::SqlState::UndefinedObject,
                            format!("unrecognized configuration parameter \"{name}\""),
                        )));
                    }
                }
            }
            Ok(Arc::new(StringArray::from(out)) as ArrayRef)
        }),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_print_as_postgres_prints_them() {
        // Postgres 15's answers for the same values.
        let cases = [
            (0, "0 bytes"),
            (10239, "10239 bytes"),
            (10240, "10 kB"),
            (10751, "10 kB"),
            (10752, "11 kB"),
            (1048575, "1024 kB"),
            (20971520, "20 MB"),
            (-20000, "-20 kB"),
            (1099511627776, "1024 GB"),
            (i64::MAX, "8192 PB"),
        ];
        for (bytes, printed) in cases {
            assert_eq!(super::size_pretty(bytes), printed, "{bytes}");
        }
    }
}
