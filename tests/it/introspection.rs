//! The introspection queries Grafana, DBeaver and the Postgres JDBC driver send on connect
//! and while browsing a table, verbatim from their source (`clients/introspection_queries.md`
//! says where each comes from). Each must succeed, except the ones listed as not working
//! yet — and those must still fail, so that the list stays true as gaps are closed.

use crate::harness::TestServer;

const QUERIES: &str = include_str!("clients/introspection_queries.md");

/// Queries that fail today, with why (none now; a gap found later goes here).
const NOT_YET: [(&str, &str); 0] = [];

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
        run += 1;
        let expected_to_fail = NOT_YET.iter().any(|(n, _)| n == name);
        // Queries with bound parameters run in the extended protocol, with the values the
        // file gives (`$1 = 'public'`, `$2 = 'bid'`; text, as the drivers bind them).
        let outcome = if sql.contains("$1") {
            let values: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&"public", &"bid"];
            let count = if sql.contains("$2") { 2 } else { 1 };
            client.query(sql.as_str(), &values[..count]).await.map(|_| ())
        } else {
            client.simple_query(sql).await.map(|_| ())
        };
        match (outcome, expected_to_fail) {
            (Ok(_), false) | (Err(_), true) => {}
            (Err(e), false) => failures.push(format!("{name} failed: {e:?}\n{sql}")),
            (Ok(_), true) => failures.push(format!("{name} works now: take it off NOT_YET")),
        }
    }
    assert!(failures.is_empty(), "{} of {run} queries:\n{}", failures.len(), failures.join("\n\n"));
}
