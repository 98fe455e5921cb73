//! Where statements run: Sabot's own Tokio runtimes (with stacks sized for deep plans),
//! and query results as bounded streams of batches.
//!
//! A query's batches travel from its task on the compute runtime to the client through a
//! channel of [`RESULT_BATCHES_BUFFERED`] batches: when the client reads slowly (or not
//! at all) the query waits, so a large result never accumulates in the server. Dropping
//! the stream (cancel, disconnect, error) aborts the query and frees its memory.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::context::SessionContext;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::logical_expr::LogicalPlan;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::common::{Error, Result};

/// Stack of every thread that plans or runs statements. Expression trees up to
/// `sql::depth::TOKEN_DEPTH_MAX` deep are dropped and cloned recursively, and DataFusion
/// evaluates expressions recursively; 16 MiB leaves room for both (pages are only
/// committed when touched).
pub const STACK_BYTES: usize = 16 << 20;

/// The stack-growing recursion DataFusion and sqlparser use (`recursive`) moves to a new
/// stack segment when less than this is left, in bytes. Its default (128 KiB) is less
/// than what one level of DataFusion's planner takes in a debug build.
const RECURSION_RED_ZONE_BYTES: usize = 1 << 20;
/// The size of each such new stack segment, in bytes.
const RECURSION_SEGMENT_BYTES: usize = 8 << 20;

/// Batches a result stream holds between the query and the client.
pub const RESULT_BATCHES_BUFFERED: usize = 2;

/// The client a task works for, for log lines written while it runs (the server's panic
/// hook reads it). Set by the server for each connection; carried into the tasks that
/// run its statements on the compute runtime.
#[derive(Debug)]
pub struct ClientContext {
    pub peer: std::net::SocketAddr,
    /// The role, once the client has logged in.
    pub user: Arc<parking_lot::Mutex<Option<String>>>,
}

tokio::task_local! {
    pub static CLIENT: Arc<ClientContext>;
}

/// A multi-threaded Tokio runtime owned by the database.
pub struct Runtime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Runtime {
    pub fn new(name: &str) -> Result<Self> {
        recursive::set_minimum_stack_size(RECURSION_RED_ZONE_BYTES);
        recursive::set_stack_allocation_size(RECURSION_SEGMENT_BYTES);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name(name)
            .thread_stack_size(STACK_BYTES)
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("cannot start the {name} runtime: {e}")))?;
        Ok(Runtime { runtime: Some(runtime) })
    }

    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime.as_ref().expect("the runtime lives until drop").handle().clone()
    }

    /// Runs `future` on this runtime, for the same client as the caller; dropping the
    /// returned handle aborts it.
    pub fn spawn<F>(&self, future: F) -> AbortOnDrop<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match CLIENT.try_with(Arc::clone) {
            Ok(client) => AbortOnDrop(self.handle().spawn(CLIENT.scope(client, future))),
            Err(_) => AbortOnDrop(self.handle().spawn(future)),
        }
    }

    /// Plans `plan` and starts it; planning errors are returned here, before any row.
    /// The returned stream yields the result batches as the client reads them.
    pub async fn stream(&self, ctx: &SessionContext, plan: LogicalPlan) -> Result<Rows> {
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        let ctx = ctx.clone();
        let (sender, receiver) = mpsc::channel(RESULT_BATCHES_BUFFERED);
        let (started_sender, started) = tokio::sync::oneshot::channel();
        let task = self.spawn(async move {
            let mut stream = match ctx.execute_logical_plan(plan).await {
                Ok(frame) => match frame.execute_stream().await {
                    Ok(stream) => stream,
                    Err(e) => return drop(started_sender.send(Err(Error::from(e)))),
                },
                Err(e) => return drop(started_sender.send(Err(Error::from(e)))),
            };
            if started_sender.send(Ok(())).is_err() {
                return;
            }
            while let Some(batch) = stream.next().await {
                let failed = batch.is_err();
                // A closed channel means the reader is gone: stop the query.
                if sender.send(batch.map_err(Error::from)).await.is_err() || failed {
                    return;
                }
            }
        });
        match started.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(task.join().await.err().unwrap_or_else(|| Error::internal("query task ended")));
            }
        }
        let conform_to = schema.clone();
        let batches = ChannelStream { receiver, _task: task }.map(move |batch| conform(batch?, &conform_to));
        Ok(Rows { schema, batches: Box::pin(batches) })
    }

    /// Runs `plan` to completion and returns all its batches. The collected batches count
    /// against the statement's memory pool, so a huge result fails with 53200 instead of
    /// growing the server.
    pub async fn collect(
        &self,
        ctx: &SessionContext,
        plan: LogicalPlan,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let pool = ctx.runtime_env().memory_pool.clone();
        let rows = self.stream(ctx, plan).await?;
        let reservation = MemoryConsumer::new("collected rows").register(&pool);
        let schema = rows.schema.clone();
        let mut batches = Vec::new();
        let mut stream = rows.batches;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            reservation.try_grow(batch.get_array_memory_size())?;
            batches.push(batch);
        }
        Ok((schema, batches))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime blocks, which is not allowed inside async code.
            runtime.shutdown_background();
        }
    }
}

/// Makes joins and unions give way to the scheduler as they produce batches.
///
/// A query is stopped (cancel, timeout, hang-up) by aborting its task, which takes effect
/// when the task next yields. DataFusion's leaves yield every so many batches, but a join
/// can emit batch after batch for one input batch (a cross join of millions of rows
/// against each batch of its other side) without polling them, so the query would run on
/// for minutes after it was stopped. Wrapped in a `CooperativeExec`, each batch a join
/// emits spends from the task's budget, and the task yields within a few hundred batches.
#[derive(Debug)]
pub struct CooperativeJoins;

impl datafusion::physical_optimizer::PhysicalOptimizerRule for CooperativeJoins {
    fn optimize(
        &self,
        plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        _config: &datafusion::config::ConfigOptions,
    ) -> datafusion::common::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        use datafusion::physical_plan::coop::CooperativeExec;
        use datafusion::physical_plan::execution_plan::SchedulingType;
        plan.transform_up(|node| {
            let multiplies = node.children().len() >= 2;
            if multiplies && node.properties().scheduling_type != SchedulingType::Cooperative {
                Ok(Transformed::yes(Arc::new(CooperativeExec::new(node)) as _))
            } else {
                Ok(Transformed::no(node))
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "cooperative_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A task that is aborted when this handle is dropped.
pub struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    pub async fn join(mut self) -> Result<T> {
        (&mut self.0).await.map_err(|e| {
            if e.is_panic() {
                Error::internal("the statement failed with an internal error (a panic, logged by the server)")
            } else {
                Error::internal(format!("statement task failed: {e}"))
            }
        })
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The result of a query: its columns and a stream of batches.
pub struct Rows {
    pub schema: SchemaRef,
    pub batches: BatchStream,
}

pub type BatchStream = Pin<Box<dyn Stream<Item = Result<RecordBatch>> + Send>>;

impl Rows {
    /// Rows that are already in memory.
    pub fn from_batches(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        Rows { schema, batches: Box::pin(futures::stream::iter(batches.into_iter().map(Ok))) }
    }

    /// Reads every batch (for callers that want the whole result in memory).
    pub async fn collect(self) -> Result<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        let mut stream = self.batches;
        while let Some(batch) = stream.next().await {
            batches.push(batch?);
        }
        Ok(batches)
    }

    /// The same rows under other column names (same types).
    pub fn renamed(self, schema: SchemaRef) -> Self {
        let target = schema.clone();
        let batches = self
            .batches
            .map(move |batch| Ok(RecordBatch::try_new(target.clone(), batch?.columns().to_vec())?));
        Rows { schema, batches: Box::pin(batches) }
    }
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows").field("schema", &self.schema).finish_non_exhaustive()
    }
}

/// The receiving end of a query's batches; owns the query's task.
struct ChannelStream {
    receiver: mpsc::Receiver<Result<RecordBatch>>,
    _task: AbortOnDrop<()>,
}

impl Stream for ChannelStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}

/// DataFusion's physical plan can produce a wider type than the logical plan declared (a
/// UNION whose branches the optimizer coerces differently); clients were told the
/// declared types, so results are cast to them (failing, not truncating, on overflow).
fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema().fields().iter().zip(schema.fields()).all(|(a, b)| a.data_type() == b.data_type()) {
        return Ok(batch);
    }
    let options = datafusion::arrow::compute::CastOptions { safe: false, ..Default::default() };
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            datafusion::arrow::compute::cast_with_options(column, field.data_type(), &options)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
