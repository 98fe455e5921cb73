//! Time-aware joins against the same query in batch, under random inserts, deletes and
//! updates on both sides, across a restart.

use tokio_postgres::Client;

use crate::differential::Random;
use crate::harness::{TestServer, rows};

const VIEWS: [(&str, &str); 4] = [
    ("latest", "SELECT l.id, l.t, r.t AS rt, r.v FROM l ASOF JOIN r ON l.k = r.k AND l.t >= r.t"),
    ("next_after", "SELECT l.id, l.t, r.t AS rt, r.v FROM l ASOF LEFT JOIN r ON l.k = r.k AND l.t < r.t"),
    ("shifted", "SELECT l.id, r.v FROM l ASOF LEFT JOIN r ON r.k = l.k AND l.t - 3 > r.t"),
    (
        "totals",
        "SELECT l.k, count(*) AS n, sum(r.v) AS s FROM l ASOF JOIN r ON l.k = r.k AND l.t <= r.t GROUP BY l.k",
    ),
];

async fn views_match_batch(client: &Client, at: usize) {
    client.batch_execute("FLUSH").await.unwrap();
    crate::harness::views_equal_batch(client, &VIEWS, &format!("after step {at}")).await;
}

/// One random change to `l` or `r`. Right rows are keyed by (k, t), so no two tie for a
/// left row; a change that would collide fails and changes nothing.
async fn change(client: &Client, random: &mut Random, next_id: &mut i64) {
    let maybe_null = |random: &mut Random, value: i64| {
        if random.below(12) == 0 { "NULL".to_string() } else { value.to_string() }
    };
    let (a, b) = (random.below(50), random.below(4));
    let sql = match random.below(10) {
        0 | 1 => {
            *next_id += 1;
            let (k, t) = (maybe_null(random, b), maybe_null(random, a));
            format!("INSERT INTO l VALUES ({next_id}, {k}, {t})")
        }
        2 => format!("UPDATE l SET t = t + {} WHERE id % 7 = {}", a % 9 - 4, b),
        3 => format!("UPDATE l SET k = (k + 1) % 4 WHERE id % 11 = {}", a % 11),
        4 => format!("DELETE FROM l WHERE id % 13 = {}", a % 13),
        5 | 6 => format!("INSERT INTO r VALUES ({b}, {a}, {})", random.below(100)),
        7 => format!("UPDATE r SET v = v + 1 WHERE k = {b}"),
        8 => format!("UPDATE r SET t = t + 1 WHERE k = {b} AND t > {a}"),
        _ => format!("DELETE FROM r WHERE t % 5 = {}", a % 5),
    };
    // A collision on r's key (23505) is part of the game.
    if let Err(e) = client.batch_execute(&sql).await {
        let code = e.code().map(|c| c.code().to_string());
        assert_eq!(code.as_deref(), Some("23505"), "{sql}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asof_views_match_batch_under_random_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path()).await;
    let client = server.client().await;
    let mut setup = "SET streaming_parallelism = 2; \
                     CREATE TABLE l (id INT PRIMARY KEY, k INT, t INT); \
                     CREATE TABLE r (k INT, t INT, v INT, PRIMARY KEY (k, t));"
        .to_string();
    for (name, query) in VIEWS {
        setup.push_str(&format!("CREATE MATERIALIZED VIEW {name} AS {query};"));
    }
    client.batch_execute(&setup).await.unwrap();
    let mut random = Random(0x0a50_f0a5_0f0a_50f0);
    let mut next_id = 0;
    for at in 0..300 {
        change(&client, &mut random, &mut next_id).await;
        if at % 20 == 19 {
            views_match_batch(&client, at).await;
        }
    }
    drop(client);
    server.stop().await;

    // After a restart the views go on from their state.
    let server = TestServer::start_in(dir.path()).await;
    let client = server.client().await;
    views_match_batch(&client, 300).await;
    for _ in 300..400 {
        change(&client, &mut random, &mut next_id).await;
    }
    views_match_batch(&client, 400).await;
    let latest = rows(&client, "SELECT count(*) FROM latest").await;
    assert_ne!(latest[0][0], "0", "the sequence should leave matches behind");
}
