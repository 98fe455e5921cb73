//! Clients over the wire: tokio-postgres (extended protocol, binary results), psql and
//! psycopg 3 (server-side parameters).

use std::process::Command;

use tokio_postgres::error::ErrorPosition;
use tokio_postgres::types::Type;

use crate::harness::{TestServer, error_code, repo_root, rows};

const ALL_TYPES: &str = "CREATE TABLE every_type (
    b BOOLEAN, i2 SMALLINT, i4 INT, i8 BIGINT, f4 REAL, f8 DOUBLE PRECISION, n NUMERIC(12,3),
    t TEXT, vc VARCHAR(10), by BYTEA, d DATE, tm TIME, ts TIMESTAMP, tz TIMESTAMPTZ,
    iv INTERVAL, j JSONB)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_descriptions_carry_postgres_type_oids() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.batch_execute(ALL_TYPES).await.unwrap();
    let statement = client.prepare("SELECT * FROM every_type").await.unwrap();
    let types: Vec<Type> = statement.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(
        types,
        [
            Type::BOOL,
            Type::INT2,
            Type::INT4,
            Type::INT8,
            Type::FLOAT4,
            Type::FLOAT8,
            Type::NUMERIC,
            Type::TEXT,
            Type::VARCHAR,
            Type::BYTEA,
            Type::DATE,
            Type::TIME,
            Type::TIMESTAMP,
            Type::TIMESTAMPTZ,
            Type::INTERVAL,
            Type::JSONB
        ]
    );
}

/// Result columns are named as Postgres names them: repeated names stay repeated, a scalar
/// subquery after its one column, CASE and ARRAY by their keyword.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_columns_are_named_as_postgres_names_them() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.batch_execute("CREATE TABLE n (id INT PRIMARY KEY, x INT)").await.unwrap();
    let statement = client
        .prepare(
            "SELECT x, x, n.x, id AS k, x AS k, (SELECT max(x) FROM n), (SELECT 1), \
             CASE WHEN x > 0 THEN 1 END, ARRAY[x], x + 1 FROM n",
        )
        .await
        .unwrap();
    let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["x", "x", "x", "k", "k", "max", "?column?", "case", "array", "?column?"]);
    // Typed literals by their type, row values as `row` (Postgres' names for the same).
    let statement = client
        .prepare("SELECT INTERVAL '1 day', DATE '2020-01-01', TIMESTAMP '2020-01-01', TIME '10:00', (1, 'z'), ROW(1, 2), 1e3")
        .await
        .unwrap();
    let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["interval", "date", "timestamp", "time", "row", "row", "?column?"]);
}

/// `char(n)` values print blank-padded to n, as in Postgres (they are stored without the
/// padding: `length`, `||` and comparisons see none, as Postgres' bpchar semantics).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn char_columns_print_blank_padded() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE ch (id INT PRIMARY KEY, c CHAR(4)); INSERT INTO ch VALUES (1, 'ab'), (2, 'abcd'), (3, NULL);
             CREATE MATERIALIZED VIEW chv AS SELECT id, c FROM ch",
        )
        .await
        .unwrap();
    for relation in ["ch", "chv"] {
        let sql = format!("SELECT c, c || 'x', length(c) FROM {relation} ORDER BY id");
        assert_eq!(
            rows(&client, &sql).await,
            [["ab  ", "abx", "2"], ["abcd", "abcdx", "4"], ["NULL", "NULL", "NULL"]],
            "{relation}"
        );
        // The binary form too.
        let row = client.query_one(&format!("SELECT c FROM {relation} WHERE id = 1"), &[]).await.unwrap();
        assert_eq!(row.get::<_, &str>(0), "ab  ");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_binds_parameters_and_returns_binary_values() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.batch_execute("CREATE TABLE p (id INT PRIMARY KEY, name TEXT, score DOUBLE PRECISION, at TIMESTAMP, raw BYTEA, ok BOOLEAN, big BIGINT)").await.unwrap();
    let insert = client.prepare("INSERT INTO p VALUES ($1, $2, $3, $4, $5, $6, $7)").await.unwrap();
    assert_eq!(
        insert.params(),
        [Type::INT4, Type::TEXT, Type::FLOAT8, Type::TIMESTAMP, Type::BYTEA, Type::BOOL, Type::INT8]
    );
    let at = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap().and_hms_micro_opt(12, 30, 0, 250).unwrap();
    for id in 0..3i32 {
        let name = format!("n{id}");
        let raw = vec![id as u8, 255];
        let n = client
            .execute(
                &insert,
                &[&id, &name, &(id as f64 * 1.5), &at, &raw, &(id % 2 == 0), &(i64::from(id) << 40)],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    let row = client
        .query_one("SELECT name, score, at, raw, ok, big FROM p WHERE id = $1", &[&2i32])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "n2");
    assert_eq!(row.get::<_, f64>(1), 3.0);
    assert_eq!(row.get::<_, chrono::NaiveDateTime>(2), at);
    assert_eq!(row.get::<_, Vec<u8>>(3), vec![2u8, 255]);
    assert!(row.get::<_, bool>(4));
    assert_eq!(row.get::<_, i64>(5), 2i64 << 40);
    // Parameters in UPDATE SET and WHERE, RETURNING through a portal.
    let updated = client
        .query("UPDATE p SET name = $1 WHERE id > $2 RETURNING id", &[&"renamed", &0i32])
        .await
        .unwrap();
    let mut ids: Vec<i32> = updated.iter().map(|r| r.get(0)).collect();
    ids.sort();
    assert_eq!(ids, [1, 2]);
    assert_eq!(client.execute("DELETE FROM p WHERE name = $1", &[&"renamed"]).await.unwrap(), 2);
    // NULL parameters.
    client.execute("INSERT INTO p (id, name) VALUES ($1, $2)", &[&9i32, &None::<String>]).await.unwrap();
    let row = client.query_one("SELECT name IS NULL FROM p WHERE id = 9", &[]).await.unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(client.query("SELECT id FROM p ORDER BY id", &[]).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn array_columns_bind_and_return_binary_arrays() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE a (id INT PRIMARY KEY, nums INT[], tags TEXT[], xs DOUBLE PRECISION[])")
        .await
        .unwrap();
    let insert = client.prepare("INSERT INTO a VALUES ($1, $2, $3, $4)").await.unwrap();
    assert_eq!(insert.params(), [Type::INT4, Type::INT4_ARRAY, Type::TEXT_ARRAY, Type::FLOAT8_ARRAY]);
    let nums = vec![Some(1i32), None, Some(3)];
    let tags = vec!["a b".to_string(), "{c}".to_string()];
    client.execute(&insert, &[&1i32, &nums, &tags, &vec![1.5f64]]).await.unwrap();
    client
        .execute(&insert, &[&2i32, &Vec::<i32>::new(), &None::<Vec<String>>, &vec![-0.25f64, 2.0]])
        .await
        .unwrap();
    // Binary results, element by element.
    let row = client.query_one("SELECT nums, tags, xs FROM a WHERE id = $1", &[&1i32]).await.unwrap();
    assert_eq!(row.get::<_, Vec<Option<i32>>>(0), nums);
    assert_eq!(row.get::<_, Vec<String>>(1), tags);
    assert_eq!(row.get::<_, Vec<f64>>(2), [1.5]);
    let row = client.query_one("SELECT nums, tags, xs[2] FROM a WHERE id = 2", &[]).await.unwrap();
    assert_eq!(row.get::<_, Vec<i32>>(0), Vec::<i32>::new());
    assert_eq!(row.get::<_, Option<Vec<String>>>(1), None);
    assert_eq!(row.get::<_, f64>(2), 2.0);
    // An array parameter in a condition, and the text forms.
    let found = client.query("SELECT id FROM a WHERE nums @> $1", &[&vec![3i32]]).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        rows(&client, "SELECT id, nums, tags FROM a ORDER BY id").await,
        [["1", "{1,NULL,3}", r#"{"a b","{c}"}"#], ["2", "{}", "NULL"]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_return_rows_in_pieces() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.batch_execute("CREATE TABLE n (i INT PRIMARY KEY)").await.unwrap();
    client.execute("INSERT INTO n SELECT CAST(value AS INT) FROM generate_series(1, 5)", &[]).await.unwrap();
    let transaction = client.transaction().await.unwrap();
    let portal = transaction.bind("SELECT i FROM n WHERE i > $1 ORDER BY i", &[&1i32]).await.unwrap();
    let first = transaction.query_portal(&portal, 3).await.unwrap();
    let rest = transaction.query_portal(&portal, 3).await.unwrap();
    let values = |rows: &[tokio_postgres::Row]| rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>();
    assert_eq!(values(&first), [2, 3, 4]);
    assert_eq!(values(&rest), [5]);
    transaction.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_sqlstate_and_position() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.batch_execute("CREATE TABLE e (id INT PRIMARY KEY, v INT NOT NULL)").await.unwrap();
    let error = client.simple_query("SELECT * FROM e WHERE").await.unwrap_err();
    let db = error.as_db_error().expect("server error");
    assert_eq!(db.code().code(), "42601");
    assert_eq!(db.position(), Some(&ErrorPosition::Original(22)));
    assert_eq!(error_code(&client, "SELECT * FROM missing").await, "42P01");
    assert_eq!(error_code(&client, "SELECT nope FROM e").await, "42703");
    assert_eq!(error_code(&client, "INSERT INTO e VALUES (true, 1)").await, "42804");
    assert_eq!(error_code(&client, "INSERT INTO e VALUES ('abc', 1)").await, "22P02");
    assert_eq!(error_code(&client, "INSERT INTO e VALUES (1, NULL)").await, "23502");
    client.batch_execute("INSERT INTO e VALUES (1, 1)").await.unwrap();
    assert_eq!(error_code(&client, "INSERT INTO e VALUES (1, 2)").await, "23505");
    assert_eq!(error_code(&client, "CREATE TABLE e (x INT)").await, "42P07");
    assert_eq!(error_code(&client, "CREATE UNIQUE INDEX i ON e (id) INCLUDE (v)").await, "0A000");
    assert_eq!(error_code(&client, "SELECT 1/0").await, "22012");
    // The session is still usable after every error.
    assert_eq!(rows(&client, "SELECT count(*) FROM e").await, [["1"]]);
    // Errors in the extended protocol too.
    let error = client.query("SELECT * FROM e WHERE id = $1", &[&"x"]).await.unwrap_err();
    assert!(error.to_string().contains("error serializing") || error.code().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_connects_and_runs_scripts() {
    let server = TestServer::start().await;
    let port = server.addr.port().to_string();
    let psql = move |args: &[&str], stdin: Option<&str>| {
        let mut command = Command::new("psql");
        command
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "sabot",
                "-d",
                "sabot",
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().expect("psql is installed (.ci/run installs postgresql-client)");
        if let Some(input) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    };
    let output = tokio::task::spawn_blocking(move || {
        let script = "CREATE TABLE fruit (name TEXT PRIMARY KEY, qty INT);\n\
                      COPY fruit FROM STDIN WITH (FORMAT csv);\napple,3\npear,5\n\\.\n\
                      SELECT name, qty FROM fruit ORDER BY qty DESC;\n";
        let first = psql(&["-A", "-t"], Some(script));
        let second = psql(&["-c", "SELECT sum(qty) AS total FROM fruit"], None);
        let third = psql(&["-c", "SELECT * FROM fruit WHERE"], None);
        (first, second, third)
    })
    .await
    .unwrap();
    let (first, second, third) = output;
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains("COPY 2"), "{stdout}");
    assert!(stdout.contains("pear|5\napple|3"), "{stdout}");
    let table = String::from_utf8_lossy(&second.stdout);
    assert!(table.contains(" total \n-------\n     8\n(1 row)"), "{table}");
    assert!(!third.status.success());
    let error = String::from_utf8_lossy(&third.stderr);
    assert!(error.contains("ERROR:  syntax error at end of input"), "{error}");
    assert!(error.contains("LINE 1: SELECT * FROM fruit WHERE"), "psql shows the error position: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_uses_server_side_parameters() {
    let server = TestServer::start().await;
    let script = repo_root().join("tests/it/clients/psycopg_check.py");
    let port = server.addr.port().to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3").arg(script).arg(port).output().expect("python3 runs")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named 'psycopg'"),
        "psycopg is missing: .ci/run installs it (pip install 'psycopg[binary]')"
    );
    assert!(
        output.status.success(),
        "psycopg check failed:\n{}{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_stdout_writes_text_and_csv_that_copy_from_reads_back() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE notes (id INT PRIMARY KEY, body TEXT, score DOUBLE PRECISION);
             INSERT INTO notes VALUES (1, 'tab' || chr(9) || 'here\\', 1.5), (2, NULL, NULL),
                                      (3, 'say \"hi\", twice', -0.25), (4, '', 'Infinity');
             CREATE TABLE notes_copy (id INT PRIMARY KEY, body TEXT, score DOUBLE PRECISION);",
        )
        .await
        .unwrap();

    // tokio-postgres runs COPY over the extended protocol.
    let text = copy_out(&client, "COPY (SELECT * FROM notes ORDER BY id) TO STDOUT").await;
    assert_eq!(text, "1\ttab\\there\\\\\t1.5\n2\t\\N\t\\N\n3\tsay \"hi\", twice\t-0.25\n4\t\tInfinity\n");
    let csv =
        copy_out(&client, "COPY notes (id, body) TO STDOUT WITH (FORMAT csv, HEADER, FORCE_QUOTE (id))")
            .await;
    // As Postgres 15 prints it: only the forced column, the quotes and the empty string
    // are quoted.
    assert_eq!(csv, "id,body\n\"1\",tab\there\\\n\"2\",\n\"3\",\"say \"\"hi\"\", twice\"\n\"4\",\"\"\n");

    // psql's \copy: out to a file in CSV and back into another table, then compared.
    let file = tempfile::NamedTempFile::new().unwrap();
    let path = file.path().display().to_string();
    let port = server.addr.port();
    let (stdout, stderr) = tokio::task::spawn_blocking(move || {
        crate::harness::psql_session(
            port,
            &["-v", "ON_ERROR_STOP=1"],
            &[
                &format!("\\copy notes TO '{path}' CSV HEADER"),
                &format!("\\copy notes_copy FROM '{path}' CSV HEADER"),
                "COPY notes TO STDOUT",
            ],
        )
    })
    .await
    .unwrap();
    assert!(stderr.is_empty(), "{stderr}");
    assert!(stdout.starts_with("COPY 4\nCOPY 4\n1\ttab"), "{stdout}");
    let differences =
        rows(&client, "SELECT count(*) FROM (SELECT * FROM notes EXCEPT SELECT * FROM notes_copy) AS d")
            .await;
    assert_eq!(differences, vec![vec!["0".to_string()]]);
    let nulls = rows(&client, "SELECT id, body IS NULL FROM notes_copy WHERE id IN (2, 4) ORDER BY id").await;
    assert_eq!(nulls, vec![vec!["2".to_string(), "t".to_string()], vec!["4".to_string(), "f".to_string()]]);

    assert_eq!(error_code(&client, "COPY notes TO '/tmp/out.csv'").await, "0A000");
    assert_eq!(error_code(&client, "COPY nope TO STDOUT").await, "42P01");
    assert_eq!(error_code(&client, "COPY notes TO STDOUT WITH (FORCE_QUOTE (id))").await, "0A000");
}

async fn copy_out(client: &tokio_postgres::Client, sql: &str) -> String {
    use futures::TryStreamExt;
    let stream = client.copy_out(sql).await.unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    String::from_utf8(chunks.concat()).unwrap()
}
