//! Random INSERT / UPDATE / DELETE sequences against a model of the expected contents:
//! key changes, key collisions (which must apply nothing), duplicate rows in a table
//! without a key, writes with and without implicit_flush, two sessions, and a restart.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use crate::harness::{TestServer, rows};

/// A small deterministic generator (xorshift64*), so failures reproduce.
pub struct Random(pub u64);

impl Random {
    pub fn below(&mut self, n: u64) -> i64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n) as i64
    }
}

#[derive(Default)]
struct Model {
    kv: BTreeMap<i64, i64>,
    bag: Vec<i64>,
}

impl Model {
    fn kv_rows(&self) -> Vec<Vec<String>> {
        self.kv.iter().map(|(k, v)| vec![k.to_string(), v.to_string()]).collect()
    }

    fn bag_rows(&self) -> Vec<Vec<String>> {
        let mut bag = self.bag.clone();
        bag.sort();
        bag.iter().map(|v| vec![v.to_string()]).collect()
    }
}

/// Runs `sql`; `Ok` if it succeeded, the SQLSTATE if it failed.
async fn run(client: &Client, sql: &str) -> Result<(), String> {
    client.batch_execute(sql).await.map_err(|e| e.code().map(|c| c.code().to_string()).unwrap_or_default())
}

async fn step(client: &Client, random: &mut Random, model: &mut Model) {
    let (a, b) = (random.below(40), random.below(40));
    match random.below(9) {
        0 | 1 => {
            let rows: Vec<(i64, i64)> =
                (0..1 + random.below(3)).map(|_| (random.below(40), random.below(100))).collect();
            let values: Vec<String> = rows.iter().map(|(k, v)| format!("({k}, {v})")).collect();
            let mut keys: Vec<i64> = rows.iter().map(|r| r.0).collect();
            keys.sort();
            keys.dedup();
            let collides = keys.len() < rows.len() || keys.iter().any(|k| model.kv.contains_key(k));
            let result = run(client, &format!("INSERT INTO kv VALUES {}", values.join(", "))).await;
            if collides {
                assert_eq!(result, Err("23505".into()), "duplicate keys {rows:?}");
            } else {
                assert_eq!(result, Ok(()));
                model.kv.extend(rows);
            }
        }
        2 => {
            let (low, high) = (a.min(b), a.max(b));
            run(client, &format!("UPDATE kv SET v = v + 1 WHERE k BETWEEN {low} AND {high}")).await.unwrap();
            for (_, v) in model.kv.range_mut(low..=high) {
                *v += 1;
            }
        }
        3 => {
            // Move one key; collides when the target is taken.
            let result = run(client, &format!("UPDATE kv SET k = {b} WHERE k = {a}")).await;
            match model.kv.get(&a).copied() {
                Some(_) if a != b && model.kv.contains_key(&b) => assert_eq!(result, Err("23505".into())),
                Some(v) => {
                    assert_eq!(result, Ok(()));
                    model.kv.remove(&a);
                    model.kv.insert(b, v);
                }
                None => assert_eq!(result, Ok(())),
            }
        }
        4 => {
            // Shift every key from `a` up by one: each new key is another row's old key.
            run(client, &format!("UPDATE kv SET k = k + 1 WHERE k >= {a}")).await.unwrap();
            let moved: Vec<(i64, i64)> = model.kv.range(a..).map(|(k, v)| (*k, *v)).collect();
            for (k, _) in &moved {
                model.kv.remove(k);
            }
            model.kv.extend(moved.into_iter().map(|(k, v)| (k + 1, v)));
        }
        5 => {
            let m = 2 + a % 3;
            run(client, &format!("DELETE FROM kv WHERE v % {m} = 0")).await.unwrap();
            model.kv.retain(|_, v| *v % m != 0);
        }
        6 => {
            let values: Vec<String> = (0..1 + b % 4).map(|i| ((a + i) % 10).to_string()).collect();
            run(client, &format!("INSERT INTO bag VALUES ({})", values.join("), ("))).await.unwrap();
            model.bag.extend(values.iter().map(|v| v.parse::<i64>().unwrap()));
        }
        7 => {
            run(client, &format!("UPDATE bag SET v = v + 10 WHERE v = {}", a % 10)).await.unwrap();
            for v in model.bag.iter_mut().filter(|v| **v == a % 10) {
                *v += 10;
            }
        }
        _ => {
            run(client, &format!("DELETE FROM bag WHERE v >= {}", 5 + a)).await.unwrap();
            model.bag.retain(|v| *v < 5 + a);
        }
    }
}

async fn check(client: &Client, model: &Model, at: usize) {
    assert_eq!(rows(client, "SELECT k, v FROM kv ORDER BY k").await, model.kv_rows(), "kv after step {at}");
    assert_eq!(rows(client, "SELECT v FROM bag ORDER BY v").await, model.bag_rows(), "bag after step {at}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_dml_matches_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path()).await;
    let (writer, reader) = (server.client().await, server.client().await);
    writer
        .batch_execute("CREATE TABLE kv (k BIGINT PRIMARY KEY, v BIGINT); CREATE TABLE bag (v BIGINT)")
        .await
        .unwrap();
    let mut random = Random(0x5ab0_7dba_5e5e_ed01);
    let mut model = Model::default();
    let mut implicit_flush = true;
    for at in 0..400 {
        if random.below(10) == 0 {
            implicit_flush = !implicit_flush;
            let setting = if implicit_flush { "on" } else { "off" };
            writer.batch_execute(&format!("SET implicit_flush = {setting}")).await.unwrap();
        }
        step(&writer, &mut random, &mut model).await;
        if at % 10 == 9 {
            if !implicit_flush {
                writer.batch_execute("FLUSH").await.unwrap();
            }
            // Another session sees every acknowledged, flushed write.
            check(&reader, &model, at).await;
        }
    }
    writer.batch_execute("FLUSH").await.unwrap();
    check(&reader, &model, 400).await;
    drop((writer, reader));
    server.stop().await;

    let server = TestServer::start_in(dir.path()).await;
    let client = server.client().await;
    check(&client, &model, 400).await;
    assert!(!model.kv.is_empty() && !model.bag.is_empty(), "the sequence should leave rows behind");
}
