//! CREATE [OR REPLACE] FUNCTION ... LANGUAGE SQL and DROP FUNCTION.
//!
//! A function is checked when it is created, as Postgres checks SQL function bodies: the
//! body is planned with its parameters typed, and its value must convert to the declared
//! result. Calls are inlined (`sql::functions`), so a view using a function is planned with
//! its body; such a function cannot be dropped without CASCADE, and cannot be replaced
//! while a materialized view uses it (its rows were computed with the body it has).

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{
    self, CreateFunction, CreateFunctionBody, FunctionBehavior, FunctionCalledOnNull,
};

use super::session::Outcome;
use super::{Database, query};
use crate::catalog::{
    Catalog, CatalogChange, FunctionBody, FunctionDesc, FunctionParameter, TableDesc, type_text,
};
use crate::common::{Error, Result, SqlState, SqlType};
use crate::sql::ddl::{normalize_ident, resolve_name};

impl Database {
    pub(super) async fn create_function(
        &self,
        create: &CreateFunction,
        session_schema: &str,
    ) -> Result<Outcome> {
        let _ddl = self.ddl_lock.lock().await;
        let catalog = self.catalog();
        let (schema, name) = resolve_name(&create.name, session_schema)?;
        if !catalog.schema_exists(&schema) {
            return Err(Error::new(SqlState::UndefinedSchema, format!("schema \"{schema}\" does not exist")));
        }
        let mut desc = bind_function(create, schema, name)?;
        if let Some(existing) = catalog.function(&desc.schema, &desc.name) {
            check_replacement(existing, &desc, create.or_replace)?;
            let users: Vec<Arc<TableDesc>> = self
                .function_dependents(&catalog, existing)?
                .into_iter()
                .filter(|d| d.is_materialized_view() || d.is_sink())
                .collect();
            if let Some(user) = users.first() {
                return Err(Error::new(
                    SqlState::DependentObjectsStillExist,
                    format!(
                        "cannot replace function {} because {} {} uses it",
                        existing.signature(),
                        user.kind_name(),
                        user.name
                    ),
                )
                .with_detail("Its rows were computed with the function's current body.")
                .with_hint("Drop the materialized views that use it first, or create the function under another name."));
            }
            desc.id = existing.id;
        } else {
            desc.id = catalog.next_table_id();
        }
        let desc = Arc::new(desc);
        self.check_body(&catalog, &desc, session_schema).await?;
        self.change_catalog(vec![CatalogChange::CreateFunction(desc)]).await?;
        Ok(Outcome::command("CREATE FUNCTION"))
    }

    pub(super) async fn drop_functions(
        &self,
        drop: &ast::DropFunction,
        session_schema: &str,
    ) -> Result<Outcome> {
        let _ddl = self.ddl_lock.lock().await;
        let catalog = self.catalog();
        let cascade = matches!(drop.drop_behavior, Some(ast::DropBehavior::Cascade));
        let mut notices = Vec::new();
        let mut functions = Vec::new();
        for target in &drop.func_desc {
            match find_function(&catalog, target, session_schema)? {
                Some(desc) => functions.push(desc),
                None if drop.if_exists => {
                    notices.push(format!("function {} does not exist, skipping", described(target)));
                }
                None => {
                    return Err(Error::new(
                        SqlState::UndefinedFunction,
                        format!("function {} does not exist", described(target)),
                    ));
                }
            }
        }
        let mut views: Vec<Arc<TableDesc>> = Vec::new();
        for function in &functions {
            let dependents = self.function_dependents(&catalog, function)?;
            if !dependents.is_empty() && !cascade {
                return Err(dependents_error(function, &dependents));
            }
            views.extend(dependents);
        }
        views.sort_by_key(|v| v.id);
        views.dedup_by_key(|v| v.id);
        let changes: Vec<CatalogChange> = functions.into_iter().map(CatalogChange::DropFunction).collect();
        if views.is_empty() {
            if !changes.is_empty() {
                self.change_catalog(changes).await?;
            }
        } else {
            for view in &views {
                notices.push(format!("drop cascades to {} {}", view.kind_name(), view.name));
            }
            notices.extend(self.drop_with_views(views, true, changes).await?);
        }
        Ok(Outcome::command("DROP FUNCTION").with_notices(notices))
    }

    /// The views (materialized, plain, sinks) whose queries call `function`, directly, in
    /// a plain view they read, or in the body of a function they call.
    pub(super) fn function_dependents(
        &self,
        catalog: &Arc<Catalog>,
        function: &FunctionDesc,
    ) -> Result<Vec<Arc<TableDesc>>> {
        let mut dependents = Vec::new();
        let mut contexts: std::collections::HashMap<&str, datafusion::execution::context::SessionContext> =
            std::collections::HashMap::new();
        for view in catalog.tables() {
            let (sql, schema) = match (&view.view, &view.plain_view) {
                (Some(def), _) if def.index.is_none() => (def.query.as_str(), def.schema_search.as_str()),
                (_, Some(def)) => (def.query.as_str(), def.schema_search.as_str()),
                _ => continue,
            };
            let Some(mut statement) = view_statement(sql) else { continue };
            let ctx = contexts.entry(schema).or_insert_with(|| self.planning_context(catalog, schema));
            if query::expand_views(ctx, &mut statement).is_err() {
                continue;
            }
            // A view whose functions no longer inline cannot be planned again anyway.
            let Ok(used) = query::inline_functions(ctx, &mut statement) else { continue };
            if used.iter().any(|f| f.id == function.id) {
                dependents.push(view.clone());
            }
        }
        Ok(dependents)
    }

    /// Plans the body with its parameters typed (NULLs of their types) and checks that
    /// its value converts to the result type.
    async fn check_body(
        &self,
        catalog: &Arc<Catalog>,
        desc: &Arc<FunctionDesc>,
        session_schema: &str,
    ) -> Result<()> {
        let mut candidate = (**catalog).clone();
        candidate.apply(&CatalogChange::CreateFunction(desc.clone()))?;
        let candidate = Arc::new(candidate);
        if let FunctionBody::Query(sql) = &desc.body {
            check_parameter_names(&candidate, desc, sql, session_schema)?;
        }
        let nulls: Vec<ast::Expr> = desc
            .parameters
            .iter()
            .map(|p| crate::sql::functions::cast(ast::Expr::value(ast::Value::Null), &p.sql_type))
            .collect::<Result<_>>()?;
        let body = crate::sql::functions::body_expression(desc, &nulls)?;
        let statement = crate::sql::parse_generated(&format!("SELECT {body}"))?;
        let ctx = self.planning_context(&candidate, session_schema);
        let plan = query::plan(&ctx, &statement).await?;
        let field = plan.schema().field(0).clone();
        if matches!(field.data_type(), datafusion::arrow::datatypes::DataType::Null) {
            return Ok(());
        }
        let actual = SqlType::from_arrow(&field);
        // Text converts to other types only by an explicit cast, as in Postgres.
        let text_to_other = actual.is_text() && !desc.returns.is_text();
        if text_to_other || !actual.assignable_to(&desc.returns) {
            return Err(Error::new(
                SqlState::InvalidFunctionDefinition,
                format!("return type mismatch in function declared to return {}", type_text(&desc.returns)),
            )
            .with_detail(format!("Actual return type is {}.", type_text(&actual))));
        }
        Ok(())
    }
}

/// The function descriptor of `CREATE FUNCTION` (its id still to be given).
fn bind_function(create: &CreateFunction, schema: String, name: String) -> Result<FunctionDesc> {
    check_supported(create)?;
    let returns = match &create.return_type {
        Some(ast::FunctionReturnType::DataType(data_type)) => SqlType::from_ast(data_type)?,
        Some(ast::FunctionReturnType::SetOf(_)) => return Err(Error::unsupported("RETURNS SETOF")),
        None => {
            return Err(Error::new(
                SqlState::InvalidFunctionDefinition,
                "function result type must be specified",
            ));
        }
    };
    crate::sql::functions::cast_type(&returns)?;
    let mut parameters: Vec<FunctionParameter> = Vec::new();
    for argument in create.args.iter().flatten() {
        if matches!(&argument.mode, Some(mode) if *mode != ast::ArgMode::In) {
            return Err(Error::unsupported("OUT, INOUT and VARIADIC parameters"));
        }
        let sql_type = SqlType::from_ast(&argument.data_type)?;
        crate::sql::functions::cast_type(&sql_type)?;
        let name = argument.name.as_ref().map(normalize_ident);
        if let Some(name) = &name
            && parameters.iter().any(|p| p.name.as_ref() == Some(name))
        {
            return Err(Error::new(
                SqlState::InvalidFunctionDefinition,
                format!("parameter name \"{name}\" used more than once"),
            ));
        }
        let default = argument.default_expr.as_ref().map(ToString::to_string);
        if default.is_none() && parameters.iter().any(|p| p.default.is_some()) {
            return Err(Error::new(
                SqlState::InvalidFunctionDefinition,
                "input parameters after one with a default value must also have defaults",
            ));
        }
        parameters.push(FunctionParameter { name, sql_type, default });
    }
    let body = match &create.function_body {
        Some(CreateFunctionBody::AsBeforeOptions { body, link_symbol: None }) => match body {
            ast::Expr::Value(value) => match &value.value {
                ast::Value::SingleQuotedString(text) => FunctionBody::Query(text.clone()),
                ast::Value::DollarQuotedString(text) => FunctionBody::Query(text.value.clone()),
                _ => return Err(Error::unsupported("this form of function body")),
            },
            _ => return Err(Error::unsupported("this form of function body")),
        },
        Some(CreateFunctionBody::Return(expr)) => FunctionBody::Return(expr.to_string()),
        Some(_) => return Err(Error::unsupported("this form of function body")),
        None => return Err(Error::new(SqlState::InvalidFunctionDefinition, "no function body specified")),
    };
    Ok(FunctionDesc {
        id: 0,
        schema,
        name,
        parameters,
        returns,
        body,
        strict: matches!(
            create.called_on_null,
            Some(FunctionCalledOnNull::Strict | FunctionCalledOnNull::ReturnsNullOnNullInput)
        ),
        volatility: match create.behavior {
            Some(FunctionBehavior::Immutable) => 'i',
            Some(FunctionBehavior::Stable) => 's',
            Some(FunctionBehavior::Volatile) | None => 'v',
        },
    })
}

/// Only `LANGUAGE SQL` functions, without the clauses Sabot has no meaning for.
fn check_supported(create: &CreateFunction) -> Result<()> {
    match &create.language {
        Some(language) if normalize_ident(language) == "sql" => {}
        Some(language) => {
            return Err(Error::unsupported(format!("LANGUAGE {}", normalize_ident(language)))
                .with_hint("Sabot runs SQL functions: LANGUAGE SQL"));
        }
        // The SQL-standard body (`RETURN expression`) needs no LANGUAGE.
        None if matches!(create.function_body, Some(CreateFunctionBody::Return(_))) => {}
        None => return Err(Error::new(SqlState::InvalidFunctionDefinition, "no language specified")),
    }
    let unsupported = [
        (create.temporary, "CREATE TEMPORARY FUNCTION"),
        (create.or_alter, "CREATE OR ALTER FUNCTION"),
        (create.if_not_exists, "CREATE FUNCTION IF NOT EXISTS"),
        (!create.set_params.is_empty(), "SET clauses of functions"),
        (matches!(create.security, Some(ast::FunctionSecurity::Definer)), "SECURITY DEFINER"),
        (
            create.using.is_some() || create.options.is_some() || create.remote_connection.is_some(),
            "these function options",
        ),
    ];
    match unsupported.iter().find(|(present, _)| *present) {
        Some((_, what)) => Err(Error::unsupported(what)),
        None => Ok(()),
    }
}

/// `CREATE OR REPLACE` of an existing function keeps its parameters and result, as
/// Postgres requires; Sabot does not overload names on parameter types.
fn check_replacement(existing: &FunctionDesc, new: &FunctionDesc, or_replace: bool) -> Result<()> {
    let types = |f: &FunctionDesc| f.parameters.iter().map(|p| type_text(&p.sql_type)).collect::<Vec<_>>();
    if types(existing) != types(new) {
        return Err(Error::unsupported("functions overloaded on their parameter types")
            .with_detail(format!("Function {} already exists.", existing.signature()))
            .with_hint("Drop it first, or give this function another name."));
    }
    if !or_replace {
        return Err(Error::new(
            SqlState::DuplicateFunction,
            format!("function \"{}\" already exists with same argument types", new.name),
        ));
    }
    let drop_first = || format!("Use DROP FUNCTION {} first.", existing.signature());
    if type_text(&existing.returns) != type_text(&new.returns) {
        return Err(Error::new(
            SqlState::InvalidFunctionDefinition,
            "cannot change return type of existing function",
        )
        .with_hint(drop_first()));
    }
    for (old, new) in existing.parameters.iter().zip(&new.parameters) {
        if let Some(old_name) = &old.name
            && old.name != new.name
        {
            return Err(Error::new(
                SqlState::InvalidFunctionDefinition,
                format!("cannot change name of input parameter \"{old_name}\""),
            )
            .with_hint(drop_first()));
        }
    }
    Ok(())
}

/// In a body that reads relations, a parameter named like one of their columns would be
/// the column in Postgres; Sabot refuses the ambiguity rather than guess.
fn check_parameter_names(catalog: &Catalog, desc: &FunctionDesc, sql: &str, schema: &str) -> Result<()> {
    let Ok(ast::Statement::Query(query)) = crate::sql::parse_generated(sql.trim().trim_end_matches(';'))
    else {
        return Ok(());
    };
    for id in crate::sql::views::referenced_relations(&query, catalog, schema) {
        let Some(relation) = catalog.table_by_id(id) else { continue };
        for parameter in desc.parameters.iter().filter_map(|p| p.name.as_ref()) {
            if relation.column_index(parameter).is_some() {
                return Err(Error::new(
                    SqlState::AmbiguousColumn,
                    format!("parameter \"{parameter}\" is also a column of \"{}\"", relation.name),
                )
                .with_hint(format!(
                    "Rename the parameter, or write it as ${} in the body.",
                    desc.parameters.iter().position(|p| p.name.as_ref() == Some(parameter)).unwrap_or(0) + 1
                )));
            }
        }
    }
    Ok(())
}

/// The function `DROP FUNCTION name[(types)]` names; its types, when given, must match.
fn find_function(
    catalog: &Catalog,
    target: &ast::FunctionDesc,
    session_schema: &str,
) -> Result<Option<Arc<FunctionDesc>>> {
    let (schema, name) = resolve_name(&target.name, session_schema)?;
    let found = catalog.function(&schema, &name).or_else(|| {
        (target.name.0.len() == 1).then(|| catalog.function(crate::catalog::DEFAULT_SCHEMA, &name)).flatten()
    });
    let Some(found) = found else { return Ok(None) };
    if let Some(arguments) = &target.args {
        let wanted: Vec<String> = arguments
            .iter()
            .map(|a| SqlType::from_ast(&a.data_type).map(|t| type_text(&t)))
            .collect::<Result<_>>()?;
        let has: Vec<String> = found.parameters.iter().map(|p| type_text(&p.sql_type)).collect();
        if wanted != has {
            return Ok(None);
        }
    }
    Ok(Some(found.clone()))
}

/// `name(types)` as a DROP FUNCTION wrote it, for messages.
fn described(target: &ast::FunctionDesc) -> String {
    let types: Vec<String> = target
        .args
        .iter()
        .flatten()
        .map(|a| SqlType::from_ast(&a.data_type).map_or_else(|_| a.data_type.to_string(), |t| type_text(&t)))
        .collect();
    format!("{}({})", target.name, types.join(", "))
}

fn dependents_error(function: &FunctionDesc, dependents: &[Arc<TableDesc>]) -> Error {
    let detail: Vec<String> = dependents
        .iter()
        .map(|d| format!("{} {} depends on function {}", d.kind_name(), d.name, function.signature()))
        .collect();
    Error::new(
        SqlState::DependentObjectsStillExist,
        format!("cannot drop function {} because other objects depend on it", function.signature()),
    )
    .with_detail(detail.join("\n"))
    .with_hint("Use DROP ... CASCADE to drop the dependent objects too.")
}

/// The statement of a stored view query (which may end with EMIT ON WINDOW CLOSE).
fn view_statement(sql: &str) -> Option<ast::Statement> {
    match crate::sql::parse(sql).ok()?.pop()? {
        crate::sql::Statement::Sql(statement) => Some(*statement),
        crate::sql::Statement::EmitOnWindowClose(statement) => Some(*statement),
        _ => None,
    }
}

/// The functions of `schema`, for DROP SCHEMA.
pub(super) fn functions_in(catalog: &Catalog, schema: &str) -> Vec<Arc<FunctionDesc>> {
    catalog.functions().filter(|f| f.schema == schema).cloned().collect()
}
