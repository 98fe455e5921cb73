//! Transaction blocks under concurrency: concurrent read-modify-write blocks lose no
//! update (the later commit fails with 40001 and is retried), and a block's writes reach
//! a materialized view together.

use tokio_postgres::error::SqlState;

use crate::harness::TestServer;

/// Runs `statements` as one block, retrying it while COMMIT fails with 40001; returns how
/// many times it was retried.
async fn run_block(client: &tokio_postgres::Client, statements: &[String]) -> usize {
    let mut retries = 0;
    loop {
        client.batch_execute("BEGIN").await.unwrap();
        for statement in statements {
            client.batch_execute(statement).await.unwrap();
        }
        match client.batch_execute("COMMIT").await {
            Ok(()) => return retries,
            Err(e) if e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE) => retries += 1,
            Err(e) => panic!("COMMIT failed: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_increments_lose_no_update() {
    let server = TestServer::start().await;
    let setup = server.client().await;
    setup
        .batch_execute("CREATE TABLE counter (id INT PRIMARY KEY, n INT); INSERT INTO counter VALUES (1, 0);")
        .await
        .unwrap();
    const SESSIONS: usize = 4;
    const INCREMENTS: usize = 25;
    let mut tasks = Vec::new();
    for _ in 0..SESSIONS {
        let client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let increment = vec!["UPDATE counter SET n = n + 1 WHERE id = 1".to_string()];
            let mut retries = 0;
            for _ in 0..INCREMENTS {
                retries += run_block(&client, &increment).await;
            }
            retries
        }));
    }
    let mut retries = 0;
    for task in tasks {
        retries += task.await.unwrap();
    }
    let n: i32 = setup.query_one("SELECT n FROM counter", &[]).await.unwrap().get(0);
    assert_eq!(n as usize, SESSIONS * INCREMENTS, "an update was lost ({retries} retries)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_block_reaches_views_all_at_once() {
    let server = TestServer::start().await;
    let setup = server.client().await;
    setup
        .batch_execute(
            "CREATE TABLE acct (id INT PRIMARY KEY, balance INT);
             INSERT INTO acct SELECT v, 100 FROM generate_series(1, 10) AS s(v);
             CREATE MATERIALIZED VIEW total AS SELECT sum(balance) AS s FROM acct;",
        )
        .await
        .unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for seed in 0..3u64 {
        let client = server.client().await;
        writers.push(tokio::spawn(async move {
            let mut state = seed + 1;
            for _ in 0..30 {
                // A transfer between two accounts: two updates that must land together.
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let from = 1 + (state >> 33) % 10;
                let to = 1 + (from + (state >> 40) % 9) % 10;
                let amount = 1 + (state >> 50) % 20;
                let transfer = vec![
                    format!("UPDATE acct SET balance = balance - {amount} WHERE id = {from}"),
                    format!("UPDATE acct SET balance = balance + {amount} WHERE id = {to}"),
                ];
                run_block(&client, &transfer).await;
            }
        }));
    }
    let reader = server.client().await;
    let watching = done.clone();
    let reads = tokio::spawn(async move {
        let mut reads = 0;
        while !watching.load(std::sync::atomic::Ordering::Relaxed) {
            let view: i64 = reader.query_one("SELECT s FROM total", &[]).await.unwrap().get(0);
            let table: i64 = reader.query_one("SELECT sum(balance) FROM acct", &[]).await.unwrap().get(0);
            assert_eq!((view, table), (1000, 1000), "a transfer was seen half done");
            reads += 1;
        }
        reads
    });
    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reads.await.unwrap() > 0);
    let moved: i64 =
        setup.query_one("SELECT count(*) FROM acct WHERE balance <> 100", &[]).await.unwrap().get(0);
    assert!(moved > 0, "the transfers changed nothing");
}

/// What psql shows: COMMIT of an aborted block answers ROLLBACK, and psql's prompt state
/// follows the block (the server reports idle / in a block / failed block).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_sees_an_aborted_block_roll_back() {
    let server = TestServer::start().await;
    let setup = server.client().await;
    setup.batch_execute("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1);").await.unwrap();
    let port = server.addr.port();
    let commands = [
        "BEGIN",
        "INSERT INTO t VALUES (2)",
        "INSERT INTO t VALUES (1)",
        "SELECT 1",
        "COMMIT",
        "SELECT count(*) FROM t",
    ];
    let (stdout, stderr) =
        tokio::task::spawn_blocking(move || crate::harness::psql_session(port, &["-At"], &commands))
            .await
            .unwrap();
    assert_eq!(stdout, "BEGIN\nINSERT 0 1\nROLLBACK\n1\n", "stderr: {stderr}");
    assert!(stderr.contains("duplicate key value violates unique constraint \"t_pkey\""), "{stderr}");
    assert!(
        stderr.contains("current transaction is aborted, commands ignored until end of transaction block"),
        "{stderr}"
    );
}
