//! `connector = 'file'`: a sink writing its changelog as JSON lines, one file per
//! committed epoch that changed anything, so that a reader of the directory never sees a
//! row that is not committed.
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `file.path` | required | the directory (created if missing; made absolute at `CREATE`) |
//!
//! Each line is one change: the sink's columns and `"op"`, one of `+I` (insert), `-D`
//! (delete), `-U` / `+U` (the old and new row of an update), as Flink names row kinds;
//! NULLs are written as `null`. Files are named `<sink>.<epoch>.jsonl`, the epoch
//! zero-padded to 20 digits so that names sort in commit order.
//!
//! While an epoch runs its rows go to `.<sink>.open`; at the epoch's barrier that file is
//! flushed, synced and renamed `.<sink>.<epoch>.sealed`; once the epoch commits it is
//! renamed into place. When the sink opens after a crash it renames every sealed file up
//! to its last committed seal into place and deletes the rest (those epochs are
//! computed again).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::json::WriterBuilder;

use super::Options;
use crate::common::{Error, Result, SqlState};
use crate::state::Epoch;
use crate::stream::sink::{Publish, Sink, SinkConnector};

pub fn build(options: &mut Options, name: &str) -> Result<Arc<dyn SinkConnector>> {
    let given = options.get("file.path").ok_or_else(|| super::missing("file.path"))?.to_string();
    std::fs::create_dir_all(&given).map_err(|e| {
        Error::new(
            SqlState::InvalidParameterValue,
            format!("option \"file.path\": cannot create directory \"{given}\": {e}"),
        )
    })?;
    let dir = std::fs::canonicalize(&given).map_err(|e| {
        Error::new(
            SqlState::InvalidParameterValue,
            format!("option \"file.path\": cannot open directory \"{given}\": {e}"),
        )
    })?;
    options.freeze("file.path", dir.to_string_lossy().into_owned());
    Ok(Arc::new(FileSink { dir, name: name.to_string() }))
}

struct FileSink {
    dir: PathBuf,
    /// The sink's name, the prefix of its files.
    name: String,
}

impl FileSink {
    fn open_path(&self) -> PathBuf {
        self.dir.join(format!(".{}.open", self.name))
    }

    fn sealed_path(&self, epoch: Epoch) -> PathBuf {
        self.dir.join(format!(".{}.{epoch:020}.sealed", self.name))
    }

    fn final_path(&self, epoch: Epoch) -> PathBuf {
        self.dir.join(format!("{}.{epoch:020}.jsonl", self.name))
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(SqlState::IoError, format!("file sink: cannot {what} \"{}\": {e}", path.display()))
}

/// Makes the directory's renames durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error("sync directory", dir, e))
}

impl SinkConnector for FileSink {
    fn open(&self, sealed: Option<Epoch>) -> Result<Box<dyn Sink>> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io_error("list", &self.dir, e))?;
        let sealed_prefix = format!(".{}.", self.name);
        for entry in entries.flatten() {
            let Ok(file) = entry.file_name().into_string() else { continue };
            let Some(epoch) = file
                .strip_prefix(&sealed_prefix)
                .and_then(|rest| rest.strip_suffix(".sealed"))
                .and_then(|e| e.parse::<Epoch>().ok())
            else {
                continue;
            };
            if sealed.is_some_and(|sealed| epoch <= sealed) {
                std::fs::rename(entry.path(), self.final_path(epoch))
                    .map_err(|e| io_error("publish", &entry.path(), e))?;
                tracing::info!(sink = %self.name, epoch, "published a committed epoch's file after a restart");
            } else {
                std::fs::remove_file(entry.path()).map_err(|e| io_error("remove", &entry.path(), e))?;
            }
        }
        let open = self.open_path();
        if open.exists() {
            std::fs::remove_file(&open).map_err(|e| io_error("remove", &open, e))?;
        }
        sync_dir(&self.dir)?;
        Ok(Box::new(FileWriter {
            files: FileSink { dir: self.dir.clone(), name: self.name.clone() },
            out: None,
        }))
    }
}

struct FileWriter {
    files: FileSink,
    /// The open file of the running epoch, once it has a row.
    out: Option<datafusion::arrow::json::Writer<BufWriter<File>, JsonLines>>,
}

/// Arrow's line-delimited JSON format.
type JsonLines = datafusion::arrow::json::writer::LineDelimited;

impl Sink for FileWriter {
    fn write(&mut self, data: &RecordBatch) -> Result<()> {
        if self.out.is_none() {
            let path = self.files.open_path();
            let file = File::create(&path).map_err(|e| io_error("create", &path, e))?;
            let writer = WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, JsonLines>(BufWriter::with_capacity(256 << 10, file));
            self.out = Some(writer);
        }
        self.out.as_mut().expect("opened").write(data)?;
        Ok(())
    }

    fn seal(&mut self, epoch: Epoch) -> Result<Option<Publish>> {
        let Some(mut out) = self.out.take() else { return Ok(None) };
        out.finish()?;
        let open = self.files.open_path();
        let file = out.into_inner().into_inner().map_err(|e| io_error("write", &open, e.into_error()))?;
        file.sync_all().map_err(|e| io_error("sync", &open, e))?;
        let sealed = self.files.sealed_path(epoch);
        std::fs::rename(&open, &sealed).map_err(|e| io_error("seal", &open, e))?;
        sync_dir(&self.files.dir)?;
        let (dir, published) = (self.files.dir.clone(), self.files.final_path(epoch));
        Ok(Some(Box::new(move || {
            std::fs::rename(&sealed, &published).map_err(|e| io_error("publish", &sealed, e))?;
            sync_dir(&dir)
        })))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn sink(dir: &Path) -> Arc<dyn SinkConnector> {
        let mut options = Options::new(
            [("file.path".to_string(), dir.to_string_lossy().into_owned())].into_iter().collect(),
        );
        build(&mut options, "s").unwrap()
    }

    #[test]
    fn an_epoch_is_visible_only_once_published() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = sink(dir.path()).open(None).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("op", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec!["+I", "-D"])),
            ],
        )
        .unwrap();
        writer.write(&batch).unwrap();
        assert!(writer.seal(7).unwrap().is_some());
        assert!(writer.seal(8).unwrap().is_none(), "an empty epoch publishes nothing");
        let visible = |dir: &Path| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().into_string().unwrap())
                .filter(|n| !n.starts_with('.'))
                .collect();
            names.sort();
            names
        };
        assert!(visible(dir.path()).is_empty(), "sealed, not yet published");
        // Reopened as after a crash: the seal of epoch 7 committed.
        writer.write(&batch).unwrap();
        drop(writer);
        let _reopened = sink(dir.path()).open(Some(7)).unwrap();
        assert_eq!(visible(dir.path()), ["s.00000000000000000007.jsonl"]);
        let text = std::fs::read_to_string(dir.path().join("s.00000000000000000007.jsonl")).unwrap();
        assert_eq!(text, "{\"k\":1,\"op\":\"+I\"}\n{\"k\":null,\"op\":\"-D\"}\n");
        let hidden = std::fs::read_dir(dir.path()).unwrap().count() - 1;
        assert_eq!(hidden, 0, "the open file of the lost epoch is gone");
    }

    #[test]
    fn seals_that_did_not_commit_are_discarded() {
        let dir = tempfile::tempdir().unwrap();
        for epoch in [5u64, 9] {
            std::fs::write(dir.path().join(format!(".s.{epoch:020}.sealed")), "{}\n").unwrap();
        }
        std::fs::write(dir.path().join(".other.00000000000000000009.sealed"), "{}\n").unwrap();
        let _sink = sink(dir.path()).open(Some(5)).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [".other.00000000000000000009.sealed", "s.00000000000000000005.jsonl"]);
    }
}
