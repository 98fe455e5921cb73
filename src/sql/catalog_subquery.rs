//! Correlated scalar subqueries over `pg_catalog` in a select list, as LEFT JOINs.
//!
//! psql's `\d NAME` reads each column's default and collation with
//! `(SELECT d.adbin FROM pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum
//! AND a.atthasdef)`: correlated, not aggregated, with outer-only and non-equality
//! conditions, which DataFusion neither decorrelates nor runs. Over the catalog, whose
//! keys are unique, such a subquery is a LEFT JOIN of a derived table — the subquery's
//! value and the inner columns its correlated conditions read — on those conditions:
//!
//! ```sql
//! SELECT a.attname, _sq1._value FROM pg_attribute a
//!   LEFT JOIN (SELECT d.adbin AS _value, d.adrelid AS _d_adrelid, d.adnum AS _d_adnum
//!              FROM pg_attrdef d) AS _sq1
//!   ON _sq1._d_adrelid = a.attrelid AND _sq1._d_adnum = a.attnum AND a.atthasdef
//! ```
//!
//! Only subqueries that read nothing but `pg_catalog` relations, name every column with
//! its relation, and sit directly in the select list of a query over one FROM item are
//! rewritten (where a key is not unique the join would repeat the outer row, where
//! Postgres raises an error; the catalog's keys are).

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, Ident, Join, ObjectNamePart, Query, Select, SelectItem, SetExpr,
    TableFactor, Visit, VisitMut, Visitor, VisitorMut,
};

/// Rewrites the select-list subqueries of `query` that qualify.
pub fn decorrelate(query: &mut Query) {
    let SetExpr::Select(select) = query.body.as_mut() else { return };
    if select.from.len() != 1 {
        return;
    }
    let mut joins = Vec::new();
    for item in &mut select.projection {
        let (SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) = item else { continue };
        let Expr::Subquery(subquery) = expr else { continue };
        let name = format!("_sq{}", joins.len() + 1);
        if let Some((join, value)) = as_join(subquery, &name) {
            *expr = value;
            joins.push(join);
        }
    }
    select.from[0].joins.extend(joins);
}

/// The LEFT JOIN that `subquery` becomes, named `name`, and the expression of its value.
fn as_join(subquery: &Query, name: &str) -> Option<(Join, Expr)> {
    if subquery.order_by.is_some() || subquery.limit_clause.is_some() || subquery.with.is_some() {
        return None;
    }
    let SetExpr::Select(select) = subquery.body.as_ref() else { return None };
    // An aggregate is computed per outer row: not a join.
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
    if grouped || select.having.is_some() || super::pg_compat::aggregates(&select.projection) {
        return None;
    }
    let [SelectItem::UnnamedExpr(value) | SelectItem::ExprWithAlias { expr: value, .. }] =
        select.projection.as_slice()
    else {
        return None;
    };
    let inner = catalog_relations(select)?;
    // Every column the value reads is the subquery's own.
    if !references(value)?.iter().all(|(q, _)| inner.contains(q)) {
        return None;
    }
    let (mut local, mut correlated) = (Vec::new(), Vec::new());
    for conjunct in conjuncts(select.selection.as_ref()) {
        let refs = references(conjunct)?;
        match refs.iter().all(|(q, _)| inner.contains(q)) && !refs.is_empty() {
            true => local.push(conjunct.clone()),
            false => correlated.push(conjunct.clone()),
        }
    }
    if correlated.is_empty() {
        return None;
    }
    // The inner columns the correlated conditions read, carried out of the derived table.
    let mut carried = BTreeSet::new();
    for conjunct in &correlated {
        carried.extend(references(conjunct)?.into_iter().filter(|(q, _)| inner.contains(q)));
    }
    let columns: Vec<String> = std::iter::once(format!("{value} AS _value"))
        .chain(carried.iter().map(|(q, c)| format!("{q}.{c} AS _{q}_{c}")))
        .collect();
    let from: Vec<String> = select.from.iter().map(|f| f.to_string()).collect();
    let filter = if local.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", local.iter().map(|c| format!("({c})")).collect::<Vec<_>>().join(" AND "))
    };
    for conjunct in &mut correlated {
        let _ = conjunct.visit(&mut Carried { inner: &inner, name });
    }
    let on: Vec<String> = correlated.iter().map(|c| format!("({c})")).collect();
    let sql = format!(
        "SELECT 1 FROM _outer LEFT JOIN (SELECT {} FROM {}{filter}) AS {name} ON {}",
        columns.join(", "),
        from.join(", "),
        on.join(" AND ")
    );
    let mut parsed = super::pg_compat::parse_query(&sql)?;
    let SetExpr::Select(outer) = parsed.body.as_mut() else { return None };
    let join = outer.from.first_mut()?.joins.pop()?;
    let value = Expr::CompoundIdentifier(vec![Ident::new(name), Ident::new("_value")]);
    Some((join, value))
}

/// The aliases of the subquery's relations when all are `pg_catalog` relations.
fn catalog_relations(select: &Select) -> Option<BTreeSet<String>> {
    let mut aliases = BTreeSet::new();
    for from in &select.from {
        if !from.joins.is_empty() {
            return None;
        }
        let TableFactor::Table { name, alias, .. } = &from.relation else { return None };
        let table = match name.0.as_slice() {
            [ObjectNamePart::Identifier(t)] => t,
            [ObjectNamePart::Identifier(s), ObjectNamePart::Identifier(t)] if s.value == "pg_catalog" => t,
            _ => return None,
        };
        if !table.value.starts_with("pg_") {
            return None;
        }
        aliases.insert(alias.as_ref().map_or_else(|| table.value.clone(), |a| a.name.value.clone()));
    }
    Some(aliases)
}

/// The `AND`ed conditions of a WHERE clause.
fn conjuncts(selection: Option<&Expr>) -> Vec<&Expr> {
    fn split<'a>(expr: &'a Expr, out: &mut Vec<&'a Expr>) {
        match expr {
            Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
                split(left, out);
                split(right, out);
            }
            Expr::Nested(inner) => split(inner, out),
            other => out.push(other),
        }
    }
    let mut out = Vec::new();
    if let Some(expr) = selection {
        split(expr, &mut out);
    }
    out
}

/// The `qualifier.column` references in `expr`; None when it names a column without its
/// relation or holds a subquery (its scope is not followed here).
fn references(expr: &Expr) -> Option<BTreeSet<(String, String)>> {
    struct References(BTreeSet<(String, String)>);
    impl Visitor for References {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Identifier(_) | Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                    ControlFlow::Break(())
                }
                Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
                    self.0.insert((parts[0].value.clone(), parts[1].value.clone()));
                    ControlFlow::Continue(())
                }
                Expr::CompoundIdentifier(_) => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        }
    }
    let mut references = References(BTreeSet::new());
    match expr.visit(&mut references) {
        ControlFlow::Break(()) => None,
        ControlFlow::Continue(()) => Some(references.0),
    }
}

/// Inner column references, made to read the derived table's carried columns.
struct Carried<'a> {
    inner: &'a BTreeSet<String>,
    name: &'a str,
}

impl VisitorMut for Carried<'_> {
    type Break = ();
    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::CompoundIdentifier(parts) = expr
            && parts.len() == 2
            && self.inner.contains(&parts[0].value)
        {
            let carried = format!("_{}_{}", parts[0].value, parts[1].value);
            *parts = vec![Ident::new(self.name), Ident::new(carried)];
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    fn rewritten(sql: &str) -> String {
        let mut query = crate::sql::pg_compat::parse_query(sql).unwrap();
        super::decorrelate(&mut query);
        query.to_string()
    }

    #[test]
    fn psql_column_subqueries_become_left_joins() {
        assert_eq!(
            rewritten(
                "SELECT a.attname, (SELECT d.adbin FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef), \
                 (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation \
                 FROM pg_catalog.pg_attribute a WHERE a.attnum > 0"
            ),
            "SELECT a.attname, _sq1._value, _sq2._value AS attcollation FROM pg_catalog.pg_attribute a \
             LEFT JOIN (SELECT d.adbin AS _value, d.adnum AS _d_adnum, d.adrelid AS _d_adrelid FROM pg_catalog.pg_attrdef d) AS _sq1 \
             ON (_sq1._d_adrelid = a.attrelid) AND (_sq1._d_adnum = a.attnum) AND (a.atthasdef) \
             LEFT JOIN (SELECT c.collname AS _value, c.oid AS _c_oid, t.oid AS _t_oid, t.typcollation AS _t_typcollation FROM pg_catalog.pg_collation c, pg_catalog.pg_type t) AS _sq2 \
             ON (_sq2._c_oid = a.attcollation) AND (_sq2._t_oid = a.atttypid) AND (a.attcollation <> _sq2._t_typcollation) \
             WHERE a.attnum > 0"
        );
        // Aggregated per outer row: left to the planner (it decorrelates these).
        let aggregated =
            "SELECT (SELECT array_agg(b.rolname) FROM pg_roles b WHERE b.oid = r.oid) FROM pg_roles r";
        assert_eq!(rewritten(aggregated), aggregated);
        // Over user tables: left to the planner.
        let user = "SELECT a.x, (SELECT b.y FROM b WHERE b.k = a.k) FROM a";
        assert_eq!(rewritten(user), user);
    }
}
