//! Operator tests in text form (STYLE rule 11): a chunk is one line per row, an op then the
//! values — `+` insert, `-` delete, `U-` / `U+` an update pair, `.` a NULL.
//!
//! ```text
//! + 1 10
//! U- 1 10
//! U+ 1 11
//! ```

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::ScalarValue;

use super::OperatorContext;
use crate::state::{MemoryStore, StateStore, WriteBatch};
use crate::stream::message::{Chunk, Op};

/// `"a:int b:text c:float d:bool e:timestamp"`: columns with short type names, all nullable.
pub fn schema(spec: &str) -> SchemaRef {
    let fields: Vec<Field> = spec
        .split_whitespace()
        .map(|column| {
            let (name, ty) = column.split_once(':').expect("name:type");
            let data_type = match ty {
                "int" => DataType::Int64,
                "int4" => DataType::Int32,
                "text" => DataType::Utf8,
                "float" => DataType::Float64,
                "bool" => DataType::Boolean,
                "timestamp" => DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None),
                other => panic!("unknown test type {other}"),
            };
            Field::new(name, data_type, true)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

pub fn chunk(schema: &SchemaRef, text: &str) -> Chunk {
    let mut ops = Vec::new();
    let mut rows: Vec<Vec<&str>> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut parts = line.split_whitespace();
        ops.push(match parts.next().expect("op") {
            "+" => Op::Insert,
            "-" => Op::Delete,
            "U-" => Op::UpdateDelete,
            "U+" => Op::UpdateInsert,
            other => panic!("unknown op {other}"),
        });
        rows.push(parts.collect());
    }
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let values = rows.iter().map(|row| {
                let text = row[i];
                if text == "." {
                    ScalarValue::try_from(field.data_type()).unwrap()
                } else {
                    ScalarValue::try_from_string(text.to_string(), field.data_type()).unwrap()
                }
            });
            if rows.is_empty() {
                datafusion::arrow::array::new_empty_array(field.data_type())
            } else {
                ScalarValue::iter_to_array(values).unwrap()
            }
        })
        .collect();
    let data = RecordBatch::try_new(schema.clone(), columns).unwrap();
    Chunk::new(ops, data)
}

/// The chunks in text form, one row per line.
pub fn pretty(chunks: &[Chunk]) -> String {
    let options = FormatOptions::default().with_null(".");
    let mut lines = Vec::new();
    for chunk in chunks {
        let formatters: Vec<ArrayFormatter> = chunk
            .data
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for (row, op) in chunk.ops.iter().enumerate() {
            let mut line = match op {
                Op::Insert => "+".to_string(),
                Op::Delete => "-".to_string(),
                Op::UpdateDelete => "U-".to_string(),
                Op::UpdateInsert => "U+".to_string(),
            };
            for formatter in &formatters {
                line.push(' ');
                line.push_str(&formatter.value(row).to_string());
            }
            lines.push(line);
        }
    }
    lines.join("\n")
}

/// The (column, value) of each message, which must all be watermarks.
pub fn watermarks(messages: &[crate::stream::message::Message]) -> Vec<(usize, ScalarValue)> {
    messages
        .iter()
        .map(|m| match m {
            crate::stream::message::Message::Watermark { column, value } => (*column, value.clone()),
            other => panic!("not a watermark: {other:?}"),
        })
        .collect()
}

/// Normalizes an expected text block (trims indentation and blank lines).
pub fn lines(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n")
}

/// A store and a context to drive an operator through epochs.
pub struct Harness {
    pub store: Arc<MemoryStore>,
    pub ctx: OperatorContext,
    /// The next epoch [`run_script`] ends.
    pub epoch: u64,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    pub fn new() -> Self {
        let store = Arc::new(MemoryStore::default());
        let ctx = OperatorContext {
            snapshot: store.snapshot(),
            view: Arc::from("test"),
            instance: 0,
            instances: 1,
            failures: Default::default(),
        };
        Harness { store, ctx, epoch: 1 }
    }

    /// A context over the current snapshot (to vary the instance).
    pub fn context(&self) -> OperatorContext {
        OperatorContext {
            snapshot: self.ctx.snapshot.clone(),
            view: self.ctx.view.clone(),
            instance: 0,
            instances: 1,
            failures: Default::default(),
        }
    }

    /// The keys committed in state table `table`.
    pub fn stored_keys(&self, table: crate::state::TableId) -> usize {
        let mut keys = 0;
        self.ctx
            .snapshot
            .scan(table, &mut |_, _| {
                keys += 1;
                Ok(())
            })
            .unwrap();
        keys
    }

    /// Ends an epoch: seals the operator's state, commits it and moves to a new snapshot.
    pub fn commit(&mut self, operator: &mut dyn super::Operator) {
        let mut batch = WriteBatch::default();
        operator.checkpoint(&mut batch);
        self.store.commit(batch).unwrap();
        self.ctx.snapshot = self.store.snapshot();
        operator.committed();
    }
}

/// Drives `operator` (input 0, whose rows have `input` schema) through a script: see
/// [`run_script_inputs`].
pub fn run_script(
    operator: &mut dyn super::Operator,
    harness: &mut Harness,
    input: &SchemaRef,
    script: &str,
) -> String {
    run_script_inputs(operator, harness, std::slice::from_ref(input), script)
}

/// Drives `operator` (whose inputs' rows have the `inputs` schemas) through a script, one
/// step per line: rows (`+ 1 10`, consecutive rows of one input form one chunk),
/// `watermark <column> <value>`, and `barrier` (the epoch ends: the barrier hook, the held
/// watermarks, a checkpoint and its commit). Rows and watermarks are of input 0 unless the
/// line starts with `<input>: `. Returns the output in the same form: rows, then
/// `watermark <column> <value>` lines.
pub fn run_script_inputs(
    operator: &mut dyn super::Operator,
    harness: &mut Harness,
    inputs: &[SchemaRef],
    script: &str,
) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut rows: Vec<&str> = Vec::new();
    let show = |chunks: Vec<Chunk>, out: &mut Vec<String>| {
        let text = pretty(&chunks);
        out.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_string));
    };
    let show_messages = |messages: Vec<crate::stream::message::Message>, out: &mut Vec<String>| {
        for message in messages {
            match message {
                crate::stream::message::Message::Chunk(c) => show(vec![c], out),
                crate::stream::message::Message::Watermark { column, value } => {
                    out.push(format!("watermark {column} {value}"))
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    let is_row = |line: &str| ["+ ", "- ", "U- ", "U+ "].iter().any(|op| line.starts_with(op));
    let lines: Vec<(usize, &str)> =
        script.lines().map(str::trim).filter(|l| !l.is_empty()).map(input_of).collect();
    for (i, &(input, line)) in lines.iter().enumerate() {
        if is_row(line) {
            rows.push(line);
            let last_row =
                lines.get(i + 1).is_none_or(|&(next_input, next)| next_input != input || !is_row(next));
            if last_row {
                let text = rows.join("\n");
                rows.clear();
                show(operator.on_chunk(&harness.ctx, input, chunk(&inputs[input], &text)).unwrap(), &mut out);
            }
        } else if let Some(rest) = line.strip_prefix("watermark ") {
            let (column, value) = rest.split_once(' ').expect("watermark <column> <value>");
            let column: usize = column.parse().expect("a column number");
            let data_type = inputs[input].field(column).data_type();
            let value = ScalarValue::try_from_string(value.to_string(), data_type).unwrap();
            show_messages(operator.on_watermark(&harness.ctx, input, column, &value).unwrap(), &mut out);
        } else if line == "barrier" {
            show(operator.on_barrier(&harness.ctx, harness.epoch).unwrap(), &mut out);
            show_messages(operator.watermarks_after_barrier(), &mut out);
            harness.commit(operator);
            harness.epoch += 1;
        } else {
            panic!("unknown script line {line}");
        }
    }
    out.join("\n")
}

/// A script line's input (`1: + 7 100`) and the rest; input 0 without a prefix.
fn input_of(line: &str) -> (usize, &str) {
    match line.split_once(": ").map(|(n, rest)| (n.parse::<usize>(), rest)) {
        Some((Ok(input), rest)) => (input, rest),
        _ => (0, line),
    }
}
