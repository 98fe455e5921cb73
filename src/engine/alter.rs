//! ALTER TABLE (RENAME TO, RENAME COLUMN, ADD COLUMN, DROP COLUMN; ADD UNIQUE and DROP
//! CONSTRAINT are in `uniques`) and ALTER VIEW /
//! MATERIALIZED VIEW / SOURCE / SINK / INDEX ... RENAME TO.
//!
//! A change is committed at an epoch boundary with everything that depends on the
//! relation: each dependent view, index and sink is planned again over the changed
//! catalog (its query rewritten to the new name after a rename) and must come out as the
//! same dataflow — the same operators and state, column positions and the renamed names
//! aside — or the ALTER is refused and names it. Running dataflows are not restarted: a
//! table's writer keeps sending each of them the columns it was planned with
//! (`TableWriter::alter`). The stored rows of a table whose columns change are re-encoded
//! in the same epoch.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use datafusion::execution::context::SessionContext;
use datafusion::sql::sqlparser::ast::{
    self, AlterTableOperation, ColumnDef, Ident, ObjectName, RenameTableNameKind, TableFactor, VisitMut,
    VisitorMut,
};

use super::Database;
use super::session::Outcome;
use super::views::{plan_view, root_node};
use crate::catalog::{Catalog, CatalogChange, TableCodec, TableDesc};
use crate::common::{Error, Result, SqlState};
use crate::sql::ddl::{normalize_ident, resolve_name};
use crate::sql::stream_plan::TableIds;

/// What an ALTER does to the stored rows of a table.
pub(super) struct RowChange {
    /// Where each old column is now (None: dropped).
    moved: Vec<Option<usize>>,
    /// The value of an added column (its DEFAULT, or NULL) and its place.
    added: Option<(usize, ArrayRef)>,
}

impl Database {
    pub(super) async fn alter_table(&self, alter: &ast::AlterTable, schema: &str) -> Result<Outcome> {
        let [operation] = alter.operations.as_slice() else {
            return Err(Error::unsupported("several changes in one ALTER TABLE")
                .with_hint("run one ALTER TABLE per change"));
        };
        let _ddl = self.ddl_lock.lock().await;
        let catalog = self.catalog();
        let (table_schema, name) = resolve_name(&alter.name, schema)?;
        let Some(desc) = catalog.table(&table_schema, &name).cloned() else {
            if alter.if_exists {
                return Ok(Outcome::command("ALTER TABLE")
                    .with_notice(format!("relation \"{name}\" does not exist, skipping")));
            }
            return Err(Error::new(SqlState::UndefinedTable, format!("relation \"{name}\" does not exist")));
        };
        match operation {
            AlterTableOperation::RenameTable { table_name } => {
                let (RenameTableNameKind::To(new_name) | RenameTableNameKind::As(new_name)) = table_name;
                self.rename(&catalog, &desc, new_name).await?;
            }
            AlterTableOperation::RenameColumn { old_column_name, new_column_name } => {
                self.rename_column(&catalog, &desc, old_column_name, new_column_name).await?;
            }
            AlterTableOperation::AddColumn { if_not_exists, column_def, column_position: None, .. } => {
                let name = normalize_ident(&column_def.name);
                if *if_not_exists && desc.column_index(&name).is_some() {
                    return Ok(Outcome::command("ALTER TABLE").with_notice(format!(
                        "column \"{name}\" of relation \"{}\" already exists, skipping",
                        desc.name
                    )));
                }
                self.add_column(&catalog, &desc, column_def).await?;
            }
            AlterTableOperation::DropColumn { column_names, if_exists, drop_behavior, .. } => {
                if matches!(drop_behavior, Some(ast::DropBehavior::Cascade)) {
                    return Err(Error::unsupported("DROP COLUMN ... CASCADE")
                        .with_hint("drop the views that read the column first"));
                }
                let [column] = column_names.as_slice() else {
                    return Err(Error::unsupported("dropping several columns in one ALTER TABLE"));
                };
                let name = normalize_ident(column);
                if *if_exists && desc.column_index(&name).is_none_or(|i| desc.columns[i].hidden) {
                    return Ok(Outcome::command("ALTER TABLE").with_notice(format!(
                        "column \"{name}\" of relation \"{}\" does not exist, skipping",
                        desc.name
                    )));
                }
                self.drop_column(&catalog, &desc, &name).await?;
            }
            AlterTableOperation::AddConstraint {
                constraint: ast::TableConstraint::Unique(unique),
                not_valid,
            } => {
                if *not_valid {
                    return Err(Error::unsupported("NOT VALID UNIQUE constraints"));
                }
                self.add_unique(&catalog, &desc, unique).await?;
            }
            AlterTableOperation::DropConstraint { if_exists, name, drop_behavior } => {
                if matches!(drop_behavior, Some(ast::DropBehavior::Cascade)) {
                    return Err(Error::unsupported("DROP CONSTRAINT ... CASCADE"));
                }
                return self.drop_constraint(&catalog, &desc, name, *if_exists).await;
            }
            other => return Err(Error::unsupported(format!("ALTER TABLE ... {other}"))),
        }
        Ok(Outcome::command("ALTER TABLE"))
    }

    /// `ALTER VIEW | MATERIALIZED VIEW | SOURCE | SINK | INDEX name RENAME TO new`.
    pub(super) async fn rename_relation(
        &self,
        kind: &str,
        name: &ObjectName,
        new_name: &ObjectName,
        if_exists: bool,
        schema: &str,
    ) -> Result<Outcome> {
        let tag = format!("ALTER {}", kind.to_uppercase());
        let _ddl = self.ddl_lock.lock().await;
        let catalog = self.catalog();
        let (relation_schema, relation) = resolve_name(name, schema)?;
        if kind == "index"
            && let Some(owner) = catalog.unique_owner(&relation_schema, &relation).cloned()
        {
            self.rename_unique(&catalog, &owner, &relation, new_name).await?;
            return Ok(Outcome::command(&tag));
        }
        let Some(desc) = catalog.table(&relation_schema, &relation).cloned() else {
            if if_exists {
                return Ok(Outcome::command(&tag)
                    .with_notice(format!("relation \"{relation}\" does not exist, skipping")));
            }
            return Err(Error::new(
                SqlState::UndefinedTable,
                format!("relation \"{relation}\" does not exist"),
            ));
        };
        if desc.kind_name() != kind {
            return Err(Error::new(SqlState::WrongObjectType, format!("\"{relation}\" is not a {kind}"))
                .with_hint(format!("Use ALTER {} to rename it.", desc.kind_name().to_uppercase())));
        }
        self.rename(&catalog, &desc, new_name).await?;
        Ok(Outcome::command(&tag))
    }

    async fn rename(&self, catalog: &Catalog, desc: &Arc<TableDesc>, new_name: &ObjectName) -> Result<()> {
        let (schema, name) = resolve_name(new_name, &desc.schema)?;
        if schema != desc.schema {
            return Err(Error::unsupported("moving a relation to another schema with RENAME"));
        }
        if catalog.table(&schema, &name).is_some() {
            return Err(Error::new(SqlState::DuplicateTable, format!("relation \"{name}\" already exists")));
        }
        // The primary key keeps its name, as in Postgres.
        let key_constraint = Some(desc.primary_key_name());
        let renamed = Arc::new(TableDesc { name, key_constraint, ..(**desc).clone() });
        self.commit_alter(catalog, desc, renamed, None).await
    }

    async fn rename_column(
        &self,
        catalog: &Catalog,
        desc: &Arc<TableDesc>,
        old: &Ident,
        new: &Ident,
    ) -> Result<()> {
        check_table(desc)?;
        let (old, new) = (normalize_ident(old), normalize_ident(new));
        let index = visible_column(desc, &old)?;
        if desc.column_index(&new).is_some() {
            return Err(Error::new(
                SqlState::DuplicateColumn,
                format!("column \"{new}\" of relation \"{}\" already exists", desc.name),
            ));
        }
        let mut altered = (**desc).clone();
        altered.columns[index].name = new;
        self.commit_alter(catalog, desc, Arc::new(altered), None).await
    }

    async fn add_column(&self, catalog: &Catalog, desc: &Arc<TableDesc>, column: &ColumnDef) -> Result<()> {
        check_table(desc)?;
        check_column_layout(desc, "add a column to")?;
        let bound = crate::sql::ddl::bind_columns(std::slice::from_ref(column), &[], &desc.name)?;
        if bound.primary_key.is_some() || !bound.checks.is_empty() || !bound.uniques.is_empty() {
            return Err(Error::unsupported("constraints other than NOT NULL and DEFAULT in ADD COLUMN"));
        }
        let added =
            bound.columns.into_iter().next().ok_or_else(|| Error::internal("ADD COLUMN bound no column"))?;
        if desc.column_index(&added.name).is_some() {
            return Err(Error::new(
                SqlState::DuplicateColumn,
                format!("column \"{}\" of relation \"{}\" already exists", added.name, desc.name),
            ));
        }
        // Before the hidden row id, which stays last.
        let at = desc.columns.iter().position(|c| c.hidden).unwrap_or(desc.columns.len());
        let mut altered = (**desc).clone();
        altered.columns.insert(at, added.clone());
        for key in &mut altered.primary_key {
            if *key >= at {
                *key += 1;
            }
        }
        super::ddl::check_defaults(&altered)?;
        let ctx = self.planning_context(&Arc::new(catalog.clone()), &desc.schema);
        let value = default_value(&ctx, &added).await?;
        let moved = (0..desc.columns.len()).map(|i| Some(if i < at { i } else { i + 1 })).collect();
        let change = RowChange { moved, added: Some((at, value)) };
        self.commit_alter(catalog, desc, Arc::new(altered), Some(change)).await
    }

    async fn drop_column(&self, catalog: &Catalog, desc: &Arc<TableDesc>, name: &str) -> Result<()> {
        check_table(desc)?;
        check_column_layout(desc, "drop a column of")?;
        let index = visible_column(desc, name)?;
        if desc.primary_key.contains(&index) {
            return Err(Error::unsupported(format!("dropping primary key column \"{name}\"")));
        }
        if let Some(unique) = desc.uniques.iter().find(|u| u.columns.contains(&index)) {
            return Err(Error::unsupported(format!(
                "dropping column \"{name}\", which UNIQUE constraint \"{}\" covers",
                unique.name
            )));
        }
        if desc.columns.iter().filter(|c| !c.hidden).count() == 1 {
            return Err(Error::unsupported(format!(
                "dropping \"{name}\", the only column of \"{}\"",
                desc.name
            )));
        }
        let shift = |i: usize| if i > index { i - 1 } else { i };
        let mut altered = (**desc).clone();
        altered.columns.remove(index);
        altered.primary_key = altered.primary_key.iter().map(|&i| shift(i)).collect();
        // As in Postgres, the CHECK constraints on the column go with it.
        altered.checks.retain(|c| !c.columns.contains(&index));
        for check in &mut altered.checks {
            check.columns = check.columns.iter().map(|&i| shift(i)).collect();
        }
        for unique in &mut altered.uniques {
            unique.columns = unique.columns.iter().map(|&i| shift(i)).collect();
        }
        let moved = (0..desc.columns.len()).map(|i| (i != index).then(|| shift(i))).collect();
        let change = RowChange { moved, added: None };
        self.commit_alter(catalog, desc, Arc::new(altered), Some(change)).await
    }

    /// Commits `altered` (which replaces `old`) with its dependents planned again over it,
    /// at a boundary; a table's writer takes the new columns and re-encoded rows there.
    pub(super) async fn commit_alter(
        &self,
        catalog: &Catalog,
        old: &Arc<TableDesc>,
        altered: Arc<TableDesc>,
        rows: Option<RowChange>,
    ) -> Result<()> {
        let mut next = catalog.clone();
        next.apply(&CatalogChange::AlterTable(altered.clone()))?;
        let mut changes = vec![CatalogChange::AlterTable(altered.clone())];
        changes.extend(self.replan_dependents(&mut next, old, &altered).await?);
        let epoch = {
            let mut boundary = self.coordinator.boundary().await?;
            let snapshot = boundary.snapshot.clone();
            if let Some(writer) = boundary.writer(old.id) {
                let (moved, stored) = match &rows {
                    Some(change) => {
                        (change.moved.clone(), reencode(old, &altered, change, snapshot.as_ref())?)
                    }
                    None => ((0..old.columns.len()).map(Some).collect(), Vec::new()),
                };
                let seeded = seed_uniques(old, &altered, snapshot.as_ref())?;
                writer.alter(altered.clone(), &moved, stored, seeded)?;
            }
            self.stage_catalog_changes(changes)?
        };
        self.coordinator.wait_committed(epoch).await?;
        tracing::info!(relation = %altered.qualified_name(), epoch, "altered");
        Ok(())
    }

    /// The catalog changes that keep `old`'s dependents (and `old` itself when it is a
    /// view: its plan names it) working once it is `new`, applied to `next` as they are
    /// made; an error names the first that cannot stay as it is.
    async fn replan_dependents(
        &self,
        next: &mut Catalog,
        old: &TableDesc,
        new: &TableDesc,
    ) -> Result<Vec<CatalogChange>> {
        let mut relations = next.dependents_closure(old.id);
        if new.is_view() {
            relations.push(Arc::new(new.clone()));
        }
        relations.sort_by_key(|r| r.id);
        let renamed_column = renamed_column(old, new);
        let same = |before: &[String], after: &[String]| {
            comparable(before, old, new, renamed_column.as_ref(), true)
                == comparable(after, old, new, renamed_column.as_ref(), false)
        };
        let mut changes = Vec::new();
        for relation in relations {
            let mut desc =
                next.table_by_id(relation.id).map_or_else(|| (*relation).clone(), |d| (**d).clone());
            if let Some(mut view) = desc.view.clone() {
                if old.name != new.name {
                    view.query = renamed_in_query(&view.query, &view.schema_search, old, &new.name)?;
                }
                let shared = Arc::new(next.clone());
                let ctx = self.planning_context(&shared, &view.schema_search);
                let ids = TableIds::Replay(view.state_tables.clone().into_iter());
                let columns: Vec<String> =
                    relation.columns.iter().filter(|c| !c.hidden).map(|c| c.name.clone()).collect();
                let revision = (view.parallelism, view.plan_revision);
                let planned =
                    plan_view(&ctx, next, ids, &view.query, &view.schema_search, &columns, revision)
                        .await
                        .map_err(|e| kept_from_working(&relation, old, &e.to_string()))?;
                let lines = root_node(planned.body, Arc::new(desc.clone())).explain();
                if !same(&view.plan, &lines) {
                    return Err(kept_from_working(&relation, old, "its plan would change"));
                }
                view.plan = lines;
                desc.view = Some(view);
            } else if let Some(mut plain) = desc.plain_view.clone() {
                if old.name != new.name {
                    plain.query = renamed_in_query(&plain.query, &plain.schema_search, old, &new.name)?;
                }
                let shared = Arc::new(next.clone());
                let ctx = self.planning_context(&shared, &plain.schema_search);
                let statement = crate::sql::parser::parse_generated(&plain.query)?;
                let plan = super::query::plan(&ctx, &super::query::name_subqueries(&statement))
                    .await
                    .map_err(|e| kept_from_working(&relation, old, &e.to_string()))?;
                // The view's columns keep their names (the expansion aliases them), so its
                // query must give as many, of the same types.
                let now: Vec<datafusion::arrow::datatypes::DataType> = plan
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| crate::common::SqlType::from_arrow(f).to_arrow())
                    .collect();
                let before: Vec<datafusion::arrow::datatypes::DataType> =
                    relation.columns.iter().map(|c| c.sql_type.to_arrow()).collect();
                if now != before {
                    return Err(kept_from_working(&relation, old, "its columns would change"));
                }
                desc.plain_view = Some(plain);
            }
            let desc = Arc::new(desc);
            next.apply(&CatalogChange::AlterTable(desc.clone()))?;
            changes.push(CatalogChange::AlterTable(desc));
        }
        Ok(changes)
    }
}

/// ALTER TABLE changes columns of plain tables only.
fn check_table(desc: &TableDesc) -> Result<()> {
    if desc.is_table() {
        return Ok(());
    }
    Err(Error::new(SqlState::WrongObjectType, format!("\"{}\" is not a table", desc.name))
        .with_hint(format!("{} {} has no columns to change", desc.kind_name(), desc.name)))
}

/// Columns of a table fed by a connector come from its format, and a watermark names a
/// column by position: neither changes columns.
fn check_column_layout(desc: &TableDesc, action: &str) -> Result<()> {
    if desc.connector.is_some() {
        return Err(Error::unsupported(format!("ALTER TABLE to {action} a table with a connector"))
            .with_hint("its columns are what its connector reads: create the table anew"));
    }
    if desc.watermark.is_some() {
        return Err(Error::unsupported(format!("ALTER TABLE to {action} a table with a WATERMARK")));
    }
    Ok(())
}

fn visible_column(desc: &TableDesc, name: &str) -> Result<usize> {
    desc.column_index(name).filter(|&i| !desc.columns[i].hidden).ok_or_else(|| {
        Error::new(
            SqlState::UndefinedColumn,
            format!("column \"{name}\" of relation \"{}\" does not exist", desc.name),
        )
    })
}

/// The error for a dependent that would not work after the change.
fn kept_from_working(dependent: &TableDesc, altered: &TableDesc, why: &str) -> Error {
    Error::new(
        SqlState::DependentObjectsStillExist,
        format!(
            "cannot alter {} {} because {} {} depends on it",
            altered.kind_name(),
            altered.name,
            dependent.kind_name(),
            dependent.name
        ),
    )
    .with_detail(format!(
        "planned again over the change, {} {}: {why}",
        dependent.kind_name(),
        dependent.name
    ))
    .with_hint("drop the dependent (a view that selects * fixes its columns when it is created), then alter")
}

/// `(old, new)` when the change renames one column.
fn renamed_column(old: &TableDesc, new: &TableDesc) -> Option<(String, String)> {
    if old.columns.len() != new.columns.len() {
        return None;
    }
    old.columns
        .iter()
        .zip(&new.columns)
        .find(|(a, b)| a.name != b.name)
        .map(|(a, b)| (a.name.clone(), b.name.clone()))
}

/// Plan lines as compared across an ALTER: column positions (`@3`) left out, and in the
/// lines from before it, the old names replaced with the new.
fn comparable(
    lines: &[String],
    old: &TableDesc,
    new: &TableDesc,
    column: Option<&(String, String)>,
    before: bool,
) -> Vec<String> {
    crate::plan::fingerprint(lines)
        .into_iter()
        .map(|line| {
            let mut line = line;
            if before {
                line = replace_word(&line, &old.qualified_name(), &new.qualified_name());
                if let Some((from, to)) = column {
                    line = replace_word(&line, from, to);
                }
            }
            without_positions(&line)
        })
        .collect()
}

/// `text` with `@<digits>` left out.
fn without_positions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '@' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// `text` with the whole word `from` replaced by `to`.
fn replace_word(text: &str, from: &str, to: &str) -> String {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        out.push_str(&rest[..at]);
        let before_ok = out.chars().next_back().is_none_or(|c| !is_word(c));
        let after = &rest[at + from.len()..];
        let after_ok = after.chars().next().is_none_or(|c| !is_word(c));
        out.push_str(if before_ok && after_ok { to } else { from });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// A view's query with the relation `old` (as the query names it, in `schema_search`)
/// renamed to `new_name`; a reference without an alias keeps the old name as its alias,
/// so that `old.column` still resolves.
fn renamed_in_query(query: &str, schema_search: &str, old: &TableDesc, new_name: &str) -> Result<String> {
    let mut statements = crate::sql::parser::parse(query)?;
    let (mut statement, closes) = match statements.pop() {
        Some(crate::sql::parser::Statement::Sql(statement)) => (*statement, false),
        Some(crate::sql::parser::Statement::EmitOnWindowClose(statement)) => (*statement, true),
        _ => return Err(Error::internal(format!("a stored query does not parse as one: {query}"))),
    };
    let mut renamer = Renamer { schema_search, old, new_name };
    let _ = statement.visit(&mut renamer);
    let mut text = statement.to_string();
    if closes {
        text.push_str(" EMIT ON WINDOW CLOSE");
    }
    Ok(text)
}

struct Renamer<'a> {
    schema_search: &'a str,
    old: &'a TableDesc,
    new_name: &'a str,
}

impl Renamer<'_> {
    /// The new name for `name` if it names the old relation.
    fn renamed(&self, name: &ObjectName) -> Option<ObjectName> {
        let (schema, relation) = resolve_name(name, self.schema_search).ok()?;
        if schema != self.old.schema || relation != self.old.name {
            return None;
        }
        let mut parts = name.0.clone();
        let last = parts.last_mut()?;
        *last = ast::ObjectNamePart::Identifier(Ident::with_quote('"', self.new_name));
        Some(ObjectName(parts))
    }
}

impl VisitorMut for Renamer<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> std::ops::ControlFlow<()> {
        if let TableFactor::Table { name, alias, args, .. } = factor {
            match args {
                // A window table function: TUMBLE(relation, ...).
                Some(args) => {
                    if let Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Identifier(
                        ident,
                    )))) = args.args.first_mut()
                        && let Some(renamed) = self.renamed(&ObjectName::from(vec![ident.clone()]))
                        && let Some(ast::ObjectNamePart::Identifier(new)) = renamed.0.last()
                    {
                        *ident = new.clone();
                    }
                }
                None => {
                    if let Some(renamed) = self.renamed(name) {
                        *name = renamed;
                        if alias.is_none() {
                            *alias = Some(ast::TableAlias {
                                name: Ident::with_quote('"', self.old.name.clone()),
                                columns: Vec::new(),
                                explicit: true,
                                at: None,
                            });
                        }
                    }
                }
            }
        }
        std::ops::ControlFlow::Continue(())
    }
}

/// An added column's value for the rows already stored: its DEFAULT evaluated once, or NULL.
/// The cast to the column's type is planned in `ctx`, so it reads text as Postgres does
/// (`'{a,b}'` for a `text[]` column is two elements).
async fn default_value(ctx: &SessionContext, column: &crate::catalog::ColumnDesc) -> Result<ArrayRef> {
    let target = column.sql_type.to_arrow();
    let Some(sql) = &column.default else { return Ok(new_null_array(&target, 1)) };
    let empty = datafusion::common::DFSchema::empty();
    let expr = ctx.parse_sql_expr(sql, &empty)?;
    let simplified = datafusion::optimizer::simplify_expressions::ExprSimplifier::new(
        datafusion::optimizer::simplify_expressions::SimplifyContext::default(),
    )
    .simplify(expr)?;
    if !matches!(simplified, datafusion::logical_expr::Expr::Literal(..)) {
        return Err(Error::unsupported(format!("ADD COLUMN with DEFAULT {sql}, which is not a constant"))
            .with_hint("add the column without a default, then UPDATE it"));
    }
    let plan = datafusion::logical_expr::LogicalPlanBuilder::empty(true)
        .project(vec![datafusion::logical_expr::cast(simplified, target.clone()).alias("v")])?
        .build()?;
    let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
    match batches.iter().find(|b| b.num_rows() > 0) {
        Some(batch) => Ok(datafusion::arrow::compute::cast(batch.column(0), &target)?),
        None => Err(Error::internal("a DEFAULT evaluated to no row")),
    }
}

/// The table's stored rows in `new`'s columns, as (key, row) to write back.
/// The values of each UNIQUE constraint `new` adds to `old`, over the stored rows: 23505
/// when two rows share one.
fn seed_uniques(
    old: &TableDesc,
    new: &TableDesc,
    snapshot: &dyn crate::state::Snapshot,
) -> Result<crate::stream::unique::Seeded> {
    let mut seeded = std::collections::BTreeMap::new();
    let added: Vec<_> =
        new.uniques.iter().filter(|u| !old.uniques.iter().any(|o| o.state == u.state)).collect();
    if added.is_empty() {
        return Ok(seeded);
    }
    let mut values: Vec<Vec<u8>> = Vec::new();
    snapshot.scan(old.id, &mut |_, value| {
        values.push(value.to_vec());
        Ok(())
    })?;
    let codec = TableCodec::new(new)?;
    let rows = codec.decode_rows(values.iter().map(Vec::as_slice))?;
    let keys = codec.encode_keys(&rows)?;
    for unique in added {
        seeded.insert(unique.state, crate::stream::unique::seed(new, unique, &rows, &keys)?);
    }
    Ok(seeded)
}

fn reencode(
    old: &TableDesc,
    new: &TableDesc,
    change: &RowChange,
    snapshot: &dyn crate::state::Snapshot,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut values: Vec<Vec<u8>> = Vec::new();
    snapshot.scan(old.id, &mut |key, value| {
        keys.push(key.to_vec());
        values.push(value.to_vec());
        Ok(())
    })?;
    let rows = TableCodec::new(old)?.decode_rows(values.iter().map(Vec::as_slice))?;
    let count = rows.num_rows();
    let mut columns: Vec<Option<ArrayRef>> = vec![None; new.columns.len()];
    for (i, moved) in change.moved.iter().enumerate() {
        if let Some(at) = moved {
            columns[*at] = Some(rows.column(i).clone());
        }
    }
    if let Some((at, value)) = &change.added {
        if !new.columns[*at].nullable && (value.is_null(0)) && count > 0 {
            return Err(Error::new(
                SqlState::NotNullViolation,
                format!(
                    "column \"{}\" of relation \"{}\" contains null values",
                    new.columns[*at].name, new.name
                ),
            ));
        }
        let repeated = datafusion::arrow::compute::take(
            value.as_ref(),
            &datafusion::arrow::array::UInt32Array::from(vec![0u32; count]),
            None,
        )?;
        columns[*at] = Some(repeated);
    }
    let columns: Vec<ArrayRef> = columns
        .into_iter()
        .collect::<Option<_>>()
        .ok_or_else(|| Error::internal("a column of the altered table has no values"))?;
    let batch = RecordBatch::try_new(new.full_schema(), columns)?;
    let encoded = TableCodec::new(new)?.encode_rows(&batch)?;
    Ok(keys.into_iter().enumerate().map(|(i, key)| (key, encoded.row(i).data().to_vec())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str) -> TableDesc {
        let mut catalog = Catalog::new();
        let create =
            match crate::sql::parser::parse(&format!("CREATE TABLE {name} (a INT)")).unwrap().remove(0) {
                crate::sql::parser::Statement::Sql(s) => match *s {
                    ast::Statement::CreateTable(c) => c,
                    _ => panic!("not a CREATE TABLE"),
                },
                _ => panic!("not SQL"),
            };
        crate::sql::ddl::bind_create_table(&create, &mut catalog, "public").unwrap()
    }

    #[test]
    fn plan_lines_compare_without_positions_and_with_new_names() {
        assert_eq!(without_positions("Project a@0, b@12 key=[a]"), "Project a, b key=[a]");
        assert_eq!(
            replace_word("Source public.t key=[t_id]", "public.t", "public.u"),
            "Source public.u key=[t_id]"
        );
        assert_eq!(
            replace_word("Materialize public.t_idx", "public.t", "public.u"),
            "Materialize public.t_idx"
        );
        assert_eq!(replace_word("a, aa, a_b, (a)", "a", "z"), "z, aa, a_b, (z)");
    }

    #[test]
    fn renamed_queries_keep_the_old_name_as_an_alias() {
        let old = table("t");
        let rewritten =
            renamed_in_query("SELECT t.a FROM t JOIN u ON t.a = u.a", "public", &old, "t2").unwrap();
        assert_eq!(rewritten, r#"SELECT t.a FROM "t2" AS "t" JOIN u ON t.a = u.a"#);
        let aliased = renamed_in_query("SELECT x.a FROM public.t AS x", "public", &old, "t2").unwrap();
        assert_eq!(aliased, r#"SELECT x.a FROM public."t2" AS x"#);
        // Another schema's t is another relation.
        let other = renamed_in_query("SELECT a FROM s.t", "public", &old, "t2").unwrap();
        assert_eq!(other, "SELECT a FROM s.t");
        let windowed = renamed_in_query(
            "SELECT window_end, count(*) FROM TUMBLE(t, a, INTERVAL '1' SECOND) GROUP BY window_end EMIT ON WINDOW CLOSE",
            "public",
            &old,
            "t2",
        )
        .unwrap();
        assert!(
            windowed.contains(r#"tumble("t2", a"#) && windowed.ends_with("EMIT ON WINDOW CLOSE"),
            "{windowed}"
        );
    }
}
