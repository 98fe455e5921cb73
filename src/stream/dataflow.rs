//! Turns a view's streaming plan into running actors: `parallelism` instances per node,
//! joined by bounded channels. A stateful node with several instances gets its input
//! hash-partitioned on its keys; a stateless node runs one instance per input instance
//! (forwarded 1:1); a single-instance node gathers its inputs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, watch};

use super::actor::{Ack, Actor, DataflowId, SourceActor};
use super::coordinator::Committed;
use super::exchange::{Dispatcher, InputSet, Outlet};
use super::message::Message;
use super::operator::Operator;
use super::operator::expand::ExpandOperator;
use super::operator::filter::FilterOperator;
use super::operator::hash_agg::HashAggOperator;
use super::operator::hash_agg::partial::PartialAggOperator;
use super::operator::hash_join::{HashJoinOperator, Side};
use super::operator::materialize::MaterializeOperator;
use super::operator::over_window::OverWindowOperator;
use super::operator::project::ProjectOperator;
use super::operator::temporal_filter::{TemporalFilterOperator, wall_clock};
use super::operator::top_n::TopNOperator;
use super::operator::union::{UnionInput, UnionOperator};
use super::operator::unnest::UnnestOperator;
use super::operator::window_tvf::WindowTvfOperator;
use super::sink::{Sink, SinkOperator};
use super::source::reader::SourceReader;
use super::source::values::ValuesSource;
use super::source::{ReadLimits, SourceConnector, SourceProgress};
use crate::catalog::TableDesc;
use crate::common::row::RowCodec;
use crate::common::{Error, Result};
use crate::plan::{NodeKind, StreamNode};
use crate::state::{Epoch, Snapshot, StateMemory, StateStore};

static NEXT_DATAFLOW: AtomicU64 = AtomicU64::new(1);

/// What a dataflow needs from its environment while it is built.
pub struct DataflowEnv<'a> {
    pub store: Arc<dyn StateStore>,
    pub acks: mpsc::UnboundedSender<Ack>,
    pub channel_capacity: usize,
    /// Rows to backfill from (a new view), or None (a view resuming from its state).
    pub backfill: Option<Arc<dyn Snapshot>>,
    /// The epoch the dataflow starts after: earlier barriers are skipped.
    pub start_epoch: Epoch,
    /// The change stream of a relation, from now on.
    pub subscribe: &'a mut dyn FnMut(&Arc<TableDesc>) -> Result<mpsc::Receiver<Message>>,
    /// What a reader of a connector source needs: its connector, the coordinator's
    /// barriers for it, its limits and where it reports progress.
    pub open_source: &'a mut dyn FnMut(&Arc<TableDesc>, DataflowId) -> Result<SourceSetup>,
    /// A sink's connector, opened, and where the coordinator's commits are followed.
    pub open_sink: &'a mut dyn FnMut(&Arc<TableDesc>) -> Result<OpenedSink>,
    /// The coordinator's barriers, for a source of constant rows.
    pub barriers: &'a mut dyn FnMut(DataflowId) -> mpsc::UnboundedReceiver<Epoch>,
    pub runtime: tokio::runtime::Handle,
    /// The memory budgets of operator state.
    pub memory: StateMemory,
}

/// A sink's connector, opened, and where the coordinator's commits are followed.
pub type OpenedSink = (Box<dyn Sink>, watch::Receiver<Committed>);

/// Everything a [`SourceReader`] gets from its environment.
pub struct SourceSetup {
    pub connector: Arc<dyn SourceConnector>,
    pub barriers: mpsc::UnboundedReceiver<Epoch>,
    pub active: Arc<std::sync::atomic::AtomicBool>,
    pub limits: ReadLimits,
    pub progress: Arc<SourceProgress>,
}

/// A running view dataflow; dropping it stops every actor.
pub struct Dataflow {
    pub id: DataflowId,
    pub view: Arc<TableDesc>,
    /// Operator actors: each acknowledges every barrier.
    pub actors: usize,
    pub outlet: Arc<Outlet>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Dataflow {
    fn drop(&mut self) {
        for handle in &self.handles {
            handle.abort();
        }
    }
}

impl Dataflow {
    /// Stops every actor and waits until they are gone (they hold the state store open).
    pub async fn stop(mut self) {
        let handles = std::mem::take(&mut self.handles);
        for handle in &handles {
            handle.abort();
        }
        for handle in handles {
            let _ = handle.await;
        }
    }

    /// Starts the actors of `plan`, whose root is the view's Materialize node (or a
    /// sink's Sink node).
    pub fn start(plan: &StreamNode, env: &mut DataflowEnv<'_>) -> Result<Dataflow> {
        let (NodeKind::Materialize { view } | NodeKind::Sink { sink: view }) = &plan.kind else {
            return Err(Error::internal("a view's plan must end in Materialize or Sink"));
        };
        let mut builder = Builder {
            id: NEXT_DATAFLOW.fetch_add(1, Ordering::Relaxed),
            view_name: Arc::from(view.qualified_name()),
            env,
            actors: 0,
            handles: Vec::new(),
        };
        let outlet = Arc::new(Outlet::default());
        let result = builder.spawn(plan, vec![Dispatcher::Outlet(outlet.clone())]);
        let dataflow = Dataflow {
            id: builder.id,
            view: view.clone(),
            actors: builder.actors,
            outlet,
            handles: std::mem::take(&mut builder.handles),
        };
        // On error, dropping `dataflow` stops what was already started.
        result.map(|()| dataflow)
    }
}

struct Builder<'e, 'a> {
    id: DataflowId,
    view_name: Arc<str>,
    env: &'e mut DataflowEnv<'a>,
    actors: usize,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Builder<'_, '_> {
    /// Starts `node`'s instances, instance `i` sending to `outputs[i]`, and its inputs.
    fn spawn(&mut self, node: &StreamNode, outputs: Vec<Dispatcher>) -> Result<()> {
        debug_assert_eq!(outputs.len(), node.parallelism);
        if let NodeKind::Source { relation, positions: Some(positions) } = &node.kind {
            let setup = (self.env.open_source)(relation, self.id)?;
            let reader = SourceReader {
                relation: relation.clone(),
                connector: setup.connector,
                positions_table: *positions,
                store: self.env.store.clone(),
                barriers: setup.barriers,
                active: setup.active,
                output: outputs.into_iter().next().expect("a source runs one instance"),
                acks: self.env.acks.clone(),
                dataflow: self.id,
                view: self.view_name.clone(),
                limits: setup.limits,
                progress: setup.progress,
            };
            self.actors += 1;
            self.handles.push(self.env.runtime.spawn(reader.run()));
            return Ok(());
        }
        if let NodeKind::Values { rows } = &node.kind {
            let source = ValuesSource {
                rows: rows.clone(),
                backfill: self.env.backfill.is_some(),
                barriers: (self.env.barriers)(self.id),
                start_epoch: self.env.start_epoch,
                output: outputs.into_iter().next().expect("a source runs one instance"),
                view: self.view_name.clone(),
                acks: self.env.acks.clone(),
                dataflow: self.id,
            };
            self.handles.push(self.env.runtime.spawn(source.run()));
            return Ok(());
        }
        if let NodeKind::Source { relation, positions: None } = &node.kind {
            let changes = (self.env.subscribe)(relation)?;
            let output = outputs.into_iter().next().expect("a source runs one instance");
            let source = SourceActor {
                relation: relation.clone(),
                backfill: self.env.backfill.clone(),
                changes,
                start_epoch: self.env.start_epoch,
                output,
                view: self.view_name.clone(),
                acks: self.env.acks.clone(),
                dataflow: self.id,
            };
            self.handles.push(self.env.runtime.spawn(source.run()));
            return Ok(());
        }
        let parallelism = node.parallelism;
        let mut receivers: Vec<Vec<(usize, mpsc::Receiver<Message>)>> =
            (0..parallelism).map(|_| Vec::new()).collect();
        for (side, input) in node.inputs.iter().enumerate() {
            let mut input_outputs = Vec::with_capacity(input.parallelism);
            for i in 0..input.parallelism {
                let dispatcher =
                    if parallelism == 1 || (!node.is_stateful() && parallelism == input.parallelism) {
                        let target = if parallelism == 1 { 0 } else { i };
                        let (sender, receiver) = mpsc::channel(self.env.channel_capacity);
                        receivers[target].push((side, receiver));
                        Dispatcher::Forward(sender)
                    } else {
                        let keys = node
                            .distribution(side)
                            .ok_or_else(|| Error::internal("parallel node without keys"))?;
                        let mut senders = Vec::with_capacity(parallelism);
                        for target in receivers.iter_mut() {
                            let (sender, receiver) = mpsc::channel(self.env.channel_capacity);
                            target.push((side, receiver));
                            senders.push(sender);
                        }
                        Dispatcher::Hash { keys, outputs: senders }
                    };
                input_outputs.push(dispatcher);
            }
            self.spawn(input, input_outputs)?;
        }
        // Inputs whose keys each come down one channel need no consolidation, nor do the
        // inputs of a node that takes an epoch's changes in any order.
        let ordered: Vec<usize> = node
            .inputs
            .iter()
            .enumerate()
            .filter(|(_, input)| node.takes_changes_in_any_order() || input.keys_stay_put())
            .map(|(side, _)| side)
            .collect();
        for (instance, (output, inputs)) in outputs.into_iter().zip(receivers).enumerate() {
            let operator: Box<dyn Operator> = match &node.kind {
                NodeKind::Sink { sink } => {
                    let (opened, committed) = (self.env.open_sink)(sink)?;
                    let def = sink.view.as_ref().and_then(|v| v.sink.as_ref());
                    let mode = def.ok_or_else(|| Error::internal("a sink without a connector"))?;
                    Box::new(SinkOperator::new(
                        opened,
                        crate::connector::sink_mode(mode)?,
                        sink.id,
                        &sink.visible_schema(),
                        committed,
                        &self.env.runtime,
                        self.view_name.clone(),
                    ))
                }
                _ => build_operator(node, &self.env.memory)?,
            };
            let actor = Actor {
                operator,
                inputs: InputSet::new(inputs, &ordered),
                output,
                store: self.env.store.clone(),
                acks: self.env.acks.clone(),
                dataflow: self.id,
                view: self.view_name.clone(),
                instance,
                instances: parallelism,
            };
            self.actors += 1;
            self.handles.push(self.env.runtime.spawn(actor.run()));
        }
        Ok(())
    }
}

fn types(node: &StreamNode) -> Vec<datafusion::arrow::datatypes::DataType> {
    node.schema.fields().iter().map(|f| f.data_type().clone()).collect()
}

/// The operator for one instance of `node`.
pub fn build_operator(node: &StreamNode, memory: &StateMemory) -> Result<Box<dyn Operator>> {
    Ok(match &node.kind {
        NodeKind::Source { .. } | NodeKind::Values { .. } => {
            return Err(Error::internal("sources are not operators"));
        }
        NodeKind::Filter { predicate } => Box::new(FilterOperator::new(predicate.clone())),
        NodeKind::Expand { sets } => Box::new(ExpandOperator::new(sets.clone(), node.schema.clone())),
        NodeKind::Unnest { columns, null_handling } => {
            Box::new(UnnestOperator::new(columns.clone(), *null_handling, node.schema.clone()))
        }
        NodeKind::Project { exprs } => Box::new(
            ProjectOperator::new(exprs.clone(), node.schema.clone())
                .with_watermarks(node.inputs[0].schema.clone(), &node.watermark_columns()),
        ),
        NodeKind::WindowTvf(spec) => {
            Box::new(WindowTvfOperator::new(spec.clone(), node.inputs[0].visible, node.schema.clone()))
        }
        NodeKind::HashAgg(agg) => {
            Box::new(HashAggOperator::new(agg, &types(&node.inputs[0]), node.schema.clone(), memory.clone())?)
        }
        NodeKind::HashJoin(join) => {
            // An as-of join orders each side's rows by time: it leads the stream key.
            let times = join.asof.as_ref().map(|b| [b.left_column, b.right_column]);
            let side = |i: usize, keys: &Vec<usize>, table| {
                let input = &node.inputs[i];
                let key =
                    input.stream_key.clone().ok_or_else(|| Error::internal("join input without a key"))?;
                let key = times.map(|t| t[i]).into_iter().chain(key).collect();
                Ok::<_, Error>(
                    Side::new(keys.clone(), key, input.visible, types(input), table, memory.clone())?
                        .with_nulls_equal(join.nulls_equal),
                )
            };
            let left = side(0, &join.left_keys, join.left_table)?;
            let right = side(1, &join.right_keys, join.right_table)?;
            let schemas = [node.inputs[0].schema.clone(), node.inputs[1].schema.clone()];
            let mut operator = HashJoinOperator::new(join, left, right, node.schema.clone())
                .with_intervals(&join.intervals, schemas)?;
            if let Some(bound) = &join.asof {
                operator = operator.with_asof(bound, &types(&node.inputs[0])[bound.left_column])?;
            }
            // Where each watermark lands in the output (a closing semi join's other side: nowhere).
            let outputs: Vec<Option<usize>> =
                join.watermarks.iter().map(|w| join.output_column(&node.inputs, w.side, w.column)).collect();
            match join.closes {
                true => Box::new(operator.with_closing(outputs.into_iter().flatten().collect())?),
                false => {
                    let outputs = outputs
                        .into_iter()
                        .collect::<Option<Vec<usize>>>()
                        .ok_or_else(|| Error::internal("a join watermark on a side the output lacks"))?;
                    Box::new(operator.with_held_watermarks(&join.watermarks, &outputs)?)
                }
            }
        }
        NodeKind::Union => {
            let inputs = node
                .inputs
                .iter()
                .map(|input| {
                    let key = input
                        .stream_key
                        .clone()
                        .ok_or_else(|| Error::internal("union input without a key"))?;
                    let key_types: Vec<_> = key.iter().map(|&i| types(input)[i].clone()).collect();
                    Ok(UnionInput {
                        visible: input.visible,
                        key_codec: if key.is_empty() { None } else { Some(RowCodec::new(&key_types)?) },
                        stream_key: key,
                    })
                })
                .collect::<Result<_>>()?;
            Box::new(UnionOperator::new(inputs, node.schema.clone()))
        }
        NodeKind::PartialAgg(agg) => {
            Box::new(PartialAggOperator::new(agg, &types(&node.inputs[0]), node.schema.clone())?)
        }
        NodeKind::TopN(top) => {
            let (input, key) = keyed_input(node)?;
            Box::new(TopNOperator::new(
                top,
                &types(input),
                input.visible,
                key,
                node.schema.clone(),
                memory.clone(),
            )?)
        }
        NodeKind::OverWindow(over) => {
            let (input, key) = keyed_input(node)?;
            let schema = node.schema.clone();
            Box::new(OverWindowOperator::new(
                over,
                &types(input),
                input.visible,
                key,
                schema,
                memory.clone(),
            )?)
        }
        NodeKind::TemporalFilter(filter) => {
            let key =
                node.stream_key.clone().ok_or_else(|| Error::internal("temporal filter without a key"))?;
            Box::new(TemporalFilterOperator::new(
                filter.conditions.clone(),
                key,
                filter.table,
                node.schema.clone(),
                wall_clock(),
            )?)
        }
        NodeKind::Materialize { view } => Box::new(MaterializeOperator::new(view.clone())?),
        NodeKind::Sink { .. } => return Err(Error::internal("a sink is opened by its dataflow")),
    })
}

/// The input of a node that keeps its input's rows, and the input's stream key.
fn keyed_input(node: &StreamNode) -> Result<(&StreamNode, Vec<usize>)> {
    let input = &node.inputs[0];
    let key = input
        .stream_key
        .clone()
        .ok_or_else(|| Error::internal(format!("{} input without a key", node.name())))?;
    Ok((input, key))
}
