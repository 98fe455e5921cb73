//! The change stream of a table: what the streaming engine will subscribe to.

use sabot::stream::{Message, Op};

use crate::harness::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dml_becomes_chunks_followed_by_a_barrier() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.batch_execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)").await.unwrap();
    let mut changes = server.db.subscribe("public", "t").await.unwrap();

    client.batch_execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')").await.unwrap();
    client.batch_execute("UPDATE t SET v = 'c' WHERE id = 2").await.unwrap();
    client.batch_execute("DELETE FROM t WHERE id = 1").await.unwrap();

    // Periodic barriers may come between the statements too: read until every change has
    // come and a barrier has followed the last one.
    let mut ops = Vec::new();
    let mut barriers = Vec::new();
    let mut sealed = false;
    while !(ops.len() == 5 && sealed) {
        match changes.recv().await.expect("stream stays open") {
            Message::Chunk(chunk) => {
                assert!(chunk.is_well_formed());
                ops.extend(chunk.ops.iter().copied());
                sealed = false;
            }
            Message::Barrier(epoch) => {
                barriers.push(epoch);
                sealed = true;
            }
            Message::Watermark { .. } => {}
        }
    }
    assert_eq!(ops, [Op::Insert, Op::Insert, Op::UpdateDelete, Op::UpdateInsert, Op::Delete]);
    assert!(barriers.windows(2).all(|w| w[0] < w[1]), "epochs increase: {barriers:?}");
    assert!(server.db.committed_epoch() >= *barriers.last().unwrap());
}
