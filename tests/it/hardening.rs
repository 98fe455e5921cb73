//! A hostile or careless client cannot crash the server, starve it, or make it grow:
//! each test here is one way that did so before (issue 7).

use std::time::{Duration, Instant};

use sabot::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{
    Process, TestServer, connect, error_code, error_code_of, message, query_message, raw_session,
    read_messages, rows, startup_message,
};

fn config() -> Config {
    Config { listen: "127.0.0.1:0".parse().unwrap(), ephemeral: true, ..Config::default() }
}

/// Parse, Bind and Execute of `sql` without parameters, with a row limit, then Sync.
fn extended_messages(sql: &str, max_rows: i32) -> Vec<u8> {
    let mut parse = vec![0];
    parse.extend_from_slice(sql.as_bytes());
    parse.extend_from_slice(&[0, 0, 0]);
    let mut out = message(b'P', &parse);
    out.extend(message(b'B', &[0, 0, 0, 0, 0, 0, 0, 0]));
    let mut execute = vec![0];
    execute.extend_from_slice(&max_rows.to_be_bytes());
    out.extend(message(b'E', &execute));
    out.extend(message(b'S', &[]));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_numbers_are_bounded_as_in_postgres() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for sql in ["select $2147483648", "select $100000000", "select $65536", "select $1"] {
        assert_eq!(error_code(&client, sql).await, "42P02", "{sql}");
    }
    let error = client.prepare("select $70000::int").await.unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("42P02"));
    // The largest number the protocol can carry still works.
    let statement = client.prepare("select $65535::int IS NULL").await.unwrap();
    assert_eq!(statement.params().len(), 65535);
    assert_eq!(rows(&client, "select 1").await, [["1"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_row_limits_are_not_preallocated() {
    let server = TestServer::start().await;
    for max_rows in [2_000_000_000, i32::MAX, -1, 0, 1] {
        let mut socket = raw_session(server.addr).await;
        socket.write_all(&extended_messages("select 1 union all select 2", max_rows)).await.unwrap();
        let messages = read_messages(&mut socket, b'Z').await;
        let kinds: Vec<u8> = messages.iter().map(|(k, _)| *k).collect();
        if let Some((_, error)) = messages.iter().find(|(k, _)| *k == b'E') {
            panic!("max_rows {max_rows}: {}", String::from_utf8_lossy(error));
        }
        if max_rows == 1 {
            assert_eq!(kinds, b"12DsZ", "one row, then PortalSuspended");
        } else {
            assert_eq!(kinds, b"12DDCZ", "max_rows {max_rows}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_statements_fail_with_54001_or_run() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let sum = |terms: usize| format!("select {}", vec!["1"; terms].join("+"));
    assert_eq!(rows(&client, &sum(900)).await, [["900"]]);
    for terms in [2_500, 20_000, 1_000_000] {
        assert_eq!(error_code(&client, &sum(terms)).await, "54001", "{terms} terms");
    }
    // Chains of an associative operator are balanced, so they run at any length.
    let chain = |selects: usize, op: &str| vec!["select 1"; selects].join(op);
    let count = |sql: String| format!("select count(*) from ({sql})");
    assert_eq!(rows(&client, &count(chain(1000, " union all "))).await, [["1000"]]);
    assert_eq!(rows(&client, &count(chain(3000, " union all "))).await, [["3000"]]);
    let ors = (0..3000).map(|i| format!("x = {i}")).collect::<Vec<_>>().join(" or ");
    assert_eq!(rows(&client, &format!("select x from (select 2999 as x) t where {ors}")).await, [["2999"]]);
    // Others are bounded: EXCEPT is not associative.
    assert_eq!(error_code(&client, &chain(1500, " except ")).await, "54001");
    assert_eq!(error_code(&client, &chain(3900, " except ")).await, "54001");
    // A deep chain that fails to parse at its end is dropped safely too.
    assert_eq!(error_code(&client, &format!("{} +", sum(1_000_000))).await, "54001");
    assert_eq!(rows(&client, "select 1").await, [["1"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_get_08p01_and_a_closed_connection() {
    let server = TestServer::start().await;
    let bad: Vec<Vec<u8>> = vec![
        // Bind whose parameter count runs past the message ("advance out of bounds").
        message(b'B', &[0, 0, 0, 0, 0xff, 0xff]),
        // Bind whose parameter length runs past the message ("split_to out of bounds").
        message(b'B', &[0, 0, 0, 0, 0, 1, 0x7f, 0, 0, 0]),
        // Parse whose type count runs past the message.
        message(b'P', &[0, b's', 0, 0x7f, 0xff]),
        // A query string without its NUL.
        message(b'Q', b"select 1"),
        // Lengths below 4 and beyond any limit.
        vec![b'Q', 0, 0, 0, 0],
        vec![b'Q', 0xff, 0xff, 0xff, 0xff],
        vec![b'Q', 0x7f, 0xff, 0xff, 0xff],
        message(b'?', b""),
    ];
    for message in bad {
        let mut socket = raw_session(server.addr).await;
        socket.write_all(&message).await.unwrap();
        let answer = read_messages(&mut socket, b'Z').await;
        let (kind, body) = answer.first().unwrap_or_else(|| panic!("no answer to {message:?}"));
        assert_eq!(*kind, b'E', "{message:?}");
        assert_eq!(error_code_of(body).as_deref(), Some("08P01"), "{message:?}");
        assert!(String::from_utf8_lossy(body).contains("FATAL"));
        assert_eq!(answer.len(), 1, "the connection closes after the error");
    }
    // A startup packet that lies about its contents.
    for startup in
        [vec![0, 0, 0, 12, 0, 3, 0, 0, b'u', 0, b'x', 0], vec![0, 0, 0, 4], vec![0x7f, 0, 0, 0, 0, 3, 0, 0]]
    {
        let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        socket.write_all(&startup).await.unwrap();
        let answer = read_messages(&mut socket, b'Z').await;
        assert_eq!(answer.first().map(|(k, _)| *k), Some(b'E'), "{startup:?}");
    }
    let client = server.client().await;
    assert_eq!(rows(&client, "select 1").await, [["1"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_cannot_lock_clients_out() {
    let server =
        TestServer::start_with(Config { connections_max: 20, startup_timeout_ms: 1_000, ..config() }).await;
    let mut idle = Vec::new();
    for i in 0..100 {
        let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        if i % 2 == 1 {
            // Half a startup packet.
            socket.write_all(&startup_message("sabot", "sabot")[..6]).await.unwrap();
        }
        idle.push(socket);
    }
    let started = Instant::now();
    let client = server.client().await;
    assert_eq!(rows(&client, "select 1").await, [["1"]]);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    // Each idle socket is closed: evicted at once, or at the startup timeout.
    for mut socket in idle {
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "an idle socket stayed open");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_get_53300() {
    let server = TestServer::start_with(Config { connections_max: 3, ..config() }).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(server.client().await);
    }
    let refused = crate::harness::connect_as(server.addr, "sabot", "", "sabot").await.err();
    assert_eq!(refused.as_deref(), Some("53300"));
    drop(clients.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again =
        crate::harness::connect_as(server.addr, "sabot", "", "sabot").await.expect("a slot is free again");
    assert_eq!(rows(&again, "select 1").await, [["1"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_over_their_memory_limit_get_53200_and_give_it_back() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let join =
        "select count(*) from generate_series(1, 2000000) a join generate_series(1, 2000000) b on a.a = b.b";
    client.batch_execute("set statement_memory_bytes_max = '4MB'").await.unwrap();
    assert_eq!(error_code(&client, join).await, "53200");
    released(&server).await;
    client.batch_execute("CREATE TABLE c (id INT PRIMARY KEY, body TEXT)").await.unwrap();
    let copy = format!(
        "COPY c FROM STDIN;\n{}\\.\n",
        (0..300_000).map(|i| format!("{i}\tsome text {i}\n")).collect::<String>()
    );
    assert_eq!(error_code(&client, &copy).await, "53200");
    assert_eq!(error_code(&client, "set statement_memory_bytes_max = '100TB'").await, "22023");
    client.batch_execute("set statement_memory_bytes_max = default").await.unwrap();
    assert_eq!(rows(&client, join).await, [["2000000"]]);
    released(&server).await;
}

/// Waits until no statement holds memory.
async fn released(server: &TestServer) {
    for _ in 0..300 {
        if server.db.statement_memory_bytes() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("statement memory stayed at {} bytes", server.db.statement_memory_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_timed_out_and_abandoned_statements_release_their_memory() {
    let server = TestServer::start().await;
    // Holds a large hash table, then runs for a long time.
    let heavy = "select count(*) from generate_series(1, 3000000) a join generate_series(1, 3000000) b on a.a = b.b \
                 cross join generate_series(1, 1000000000) c";
    let wait_for = |reserved: bool| {
        let db = server.db.clone();
        async move {
            for _ in 0..300 {
                if (db.statement_memory_bytes() > 0) == reserved {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("statement memory stayed at {} bytes", db.statement_memory_bytes());
        }
    };
    // Cancelled.
    let client = server.client().await;
    let cancel = client.cancel_token();
    let running = tokio::spawn(async move { client.simple_query(heavy).await.map(|_| ()) });
    wait_for(true).await;
    cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let error = running.await.unwrap().unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("57014"));
    wait_for(false).await;
    // Timed out.
    let client = server.client().await;
    client.batch_execute("set statement_timeout = '1s'").await.unwrap();
    let started = Instant::now();
    assert_eq!(error_code(&client, heavy).await, "57014");
    assert!(started.elapsed() < Duration::from_secs(30));
    wait_for(false).await;
    // Abandoned: the client vanishes mid-query.
    let mut socket = raw_session(server.addr).await;
    socket.write_all(&query_message(heavy)).await.unwrap();
    wait_for(true).await;
    drop(socket);
    wait_for(false).await;
}

/// A client that asks for a huge result and stops reading holds the query, not memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_grow_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start(dir.path());
    let client = connect(server.addr).await;
    assert_eq!(rows(&client, "select 1").await, [["1"]]);
    let before = server.resident_bytes();
    let mut readers = Vec::new();
    for _ in 0..2 {
        let mut socket = raw_session(server.addr).await;
        let cross = "select * from generate_series(1, 100000) a cross join generate_series(1, 100000) b";
        socket.write_all(&query_message(cross)).await.unwrap();
        readers.push(socket);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = server.resident_bytes();
    assert!(
        after < before + (200 << 20),
        "resident memory grew from {before} to {after} bytes while clients did not read"
    );
    // Others are served meanwhile.
    assert_eq!(rows(&client, "select count(*) from generate_series(1, 1000)").await, [["1000"]]);
    drop(readers);
}

/// A panic while serving one connection closes it with XX000; the server stays up and
/// logs the panic once, with the connection's peer and role.
#[cfg(debug_assertions)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_connection_is_contained_and_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let server = Process::start_logged(&dir.path().join("data"), &log);
    let mut socket = raw_session(server.addr).await;
    socket.write_all(&query_message(sabot::server::DEBUG_PANIC_QUERY)).await.unwrap();
    let answer = read_messages(&mut socket, b'Z').await;
    let (kind, body) = answer.first().expect("an answer");
    assert_eq!(*kind, b'E');
    assert_eq!(error_code_of(body).as_deref(), Some("XX000"));
    let client = connect(server.addr).await;
    assert_eq!(rows(&client, "select 1").await, [["1"]]);
    let text = std::fs::read_to_string(&log).unwrap();
    let panics: Vec<&str> = text.lines().filter(|l| l.contains("panic")).collect();
    assert_eq!(panics.len(), 1, "{text}");
    assert!(panics[0].contains("peer=127.0.0.1") && panics[0].contains("user=sabot"), "{}", panics[0]);
}

/// A statement stopped by its timeout stops computing at once, even inside a join that
/// emits batch after batch, and the server's resident memory falls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_statement_stops_and_gives_memory_back_to_the_system() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start(dir.path());
    let client = connect(server.addr).await;
    assert_eq!(rows(&client, "select 1").await, [["1"]]);
    let baseline = server.resident_bytes();
    client.batch_execute("set statement_timeout = '4s'").await.unwrap();
    let heavy = "select count(*) from generate_series(1, 8000000) a join generate_series(1, 8000000) b \
                 on a.a = b.b cross join generate_series(1, 1000000000) c";
    let running = tokio::spawn(async move { crate::harness::error_code(&client, heavy).await });
    let mut peak = baseline;
    while !running.is_finished() {
        peak = peak.max(server.resident_bytes());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(running.await.unwrap(), "57014");
    assert!(peak > baseline + (100 << 20), "the query never used much memory ({baseline} -> {peak})");
    let cpu = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu(server.child.id());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu(server.child.id()) - before;
    assert!(spent < 50, "the server kept computing after the timeout: {spent} ticks in 2 s");
    let after = server.resident_bytes();
    assert!(
        after < baseline + (peak - baseline) / 2,
        "resident memory stayed high: {baseline} before, {peak} at the peak, {after} after"
    );
}
