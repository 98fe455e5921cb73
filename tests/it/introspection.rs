//! The introspection queries Grafana, DBeaver and the Postgres JDBC driver send on connect
//! and while browsing a table, verbatim from their source (`clients/introspection_queries.md`
//! says where each comes from). Each must succeed, except the ones listed as not working
//! yet — and those must still fail, so that the list stays true as gaps are closed.

use crate::harness::TestServer;

const QUERIES: &str = include_str!("clients/introspection_queries.md");

/// Queries that fail today, with why (issue 12's remaining work).
const NOT_YET: [(&str, &str); 17] = [
    ("G5", "array_lower and scalar functions in FROM"),
    ("G6", "parse_ident"),
    ("G11", "information_schema.columns.udt_name"),
    ("G12", "array_lower and scalar functions in FROM"),
    ("G13", "array_lower and scalar functions in FROM"),
    ("G14", "array_lower and scalar functions in FROM"),
    ("D4", "a pg_catalog relation inside a subquery"),
    ("D11", "pg_get_partkeydef"),
    ("D12", "pg_depend"),
    ("D13", "a pg_catalog relation inside a subquery"),
    ("D14", "pg_stat_get_numscans"),
    ("D19", "pg_database_size"),
    ("P2", "pg_catalog.unnest as a table function"),
    ("P4", "a pg_catalog relation inside a subquery"),
    ("P6", "information_schema._pg_expandarray"),
    ("P7", "array_upper"),
    ("P9", "array_upper"),
];

/// `(name, sql)` of every query in the file; a block of two statements (D8) gives two.
fn queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = QUERIES;
    while let Some(start) = rest.find("\n**") {
        rest = &rest[start + 3..];
        // Query headings are `**G1.**`, `**D12.**`, `**P3.**`; other bold text is prose.
        let Some(end) = rest.find(".**") else { break };
        let name = rest[..end].to_string();
        let is_query = name.len() <= 3
            && name.starts_with(['G', 'D', 'P'])
            && name[1..].chars().all(|c| c.is_ascii_digit());
        if !is_query {
            continue;
        }
        let Some(open) = rest.find("```sql\n") else { break };
        let body = &rest[open + 7..];
        let Some(close) = body.find("```") else { break };
        for sql in body[..close]
            .split("\n\nSELECT")
            .enumerate()
            .map(|(i, part)| if i == 0 { part.to_string() } else { format!("SELECT{part}") })
        {
            out.push((name.clone(), sql));
        }
        rest = &body[close..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_dbeaver_and_jdbc_introspection_queries_run() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE bid (auction INT PRIMARY KEY, price INT NOT NULL, note TEXT DEFAULT 'none');
             CREATE VIEW high AS SELECT auction FROM bid WHERE price > 10;",
        )
        .await
        .unwrap();
    let queries = queries();
    assert!(queries.len() >= 40, "read {} queries from the file", queries.len());
    let mut failures = Vec::new();
    let mut run = 0;
    for (name, sql) in &queries {
        // Bound parameters ($1) need the extended protocol and values: not run here.
        if sql.contains("$1") {
            continue;
        }
        run += 1;
        let expected_to_fail = NOT_YET.iter().any(|(n, _)| n == name);
        match (client.simple_query(sql).await, expected_to_fail) {
            (Ok(_), false) | (Err(_), true) => {}
            (Err(e), false) => failures.push(format!("{name} failed: {e:?}\n{sql}")),
            (Ok(_), true) => failures.push(format!("{name} works now: take it off NOT_YET")),
        }
    }
    assert!(failures.is_empty(), "{} of {run} queries:\n{}", failures.len(), failures.join("\n\n"));
}
