//! `connector = 'posix_fs'`: the files of a local directory, each read once, each a split.
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `posix_fs.root` | required | the directory (made absolute at `CREATE`; it must exist) |
//! | `match_pattern` | `*` | a glob over file names (`*`, `?`, `[a-z]`); other files are ignored |
//! | `posix_fs.poll.interval.ms` | 1000 | how often the directory is listed for new files |
//!
//! The directory is listed again while the source runs: a new file is a new split, read
//! from its start. A file is read to its end once, so a file must be complete when it
//! appears: write it elsewhere (or under a name starting with `.`, which is ignored) and
//! rename it into the directory. Subdirectories are not read.
//!
//! A text file's position is `byte offset:line`, after the last whole line read; a
//! Parquet file's is the number of rows read. A record that does not decode becomes a
//! dead letter at `file:line`; a file that vanishes before it is read, or a Parquet file
//! that cannot be read, is one dead letter at `file`.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use super::Options;
use super::format::{Encode, TextBlock, conform, decode_text};
use crate::catalog::FormatDef;
use crate::common::{Error, Result, SqlState};
use crate::stream::source::{DeadLetter, Read, SourceConnector, SplitChunk, SplitId, SplitReader};

const DEFAULT_POLL_MS: u64 = 1000;

/// A line longer than this is a dead letter (its bytes skipped), not a memory hazard.
const LINE_BYTES_MAX: usize = 16 << 20;

pub fn build(
    options: &mut Options,
    schema: &SchemaRef,
    format: Option<&FormatDef>,
) -> Result<Arc<dyn SourceConnector>> {
    let Some(format) = format else {
        return Err(Error::new(SqlState::SyntaxError, "connector posix_fs needs a FORMAT clause")
            .with_hint("add FORMAT PLAIN ENCODE CSV (...), JSON or PARQUET"));
    };
    let encode = Encode::from_def(format)?;
    let given = options.get("posix_fs.root").ok_or_else(|| super::missing("posix_fs.root"))?.to_string();
    let root = std::fs::canonicalize(&given).map_err(|e| {
        Error::new(
            SqlState::InvalidParameterValue,
            format!("option \"posix_fs.root\": cannot open directory \"{given}\": {e}"),
        )
    })?;
    if !root.is_dir() {
        return Err(Error::new(
            SqlState::InvalidParameterValue,
            format!("option \"posix_fs.root\": \"{given}\" is not a directory"),
        ));
    }
    // Frozen absolute: a restart in another working directory reads the same files.
    options.freeze("posix_fs.root", root.to_string_lossy().into_owned());
    let pattern_text = options.get("match_pattern").unwrap_or("*").to_string();
    let pattern = glob::Pattern::new(&pattern_text).map_err(|e| {
        Error::new(
            SqlState::InvalidParameterValue,
            format!("invalid value \"{pattern_text}\" for option \"match_pattern\": {e}"),
        )
    })?;
    let poll_ms: u64 = options.parse("posix_fs.poll.interval.ms", DEFAULT_POLL_MS)?;
    Ok(Arc::new(PosixFs {
        root,
        pattern,
        encode,
        schema: schema.clone(),
        poll: Duration::from_millis(poll_ms.max(10)),
    }))
}

struct PosixFs {
    root: PathBuf,
    pattern: glob::Pattern,
    encode: Encode,
    schema: SchemaRef,
    poll: Duration,
}

impl SourceConnector for PosixFs {
    /// The matching files' names, sorted.
    fn splits(&self) -> Result<Vec<SplitId>> {
        let entries = std::fs::read_dir(&self.root).map_err(|e| {
            Error::new(SqlState::IoError, format!("cannot list directory \"{}\": {e}", self.root.display()))
        })?;
        let mut names = Vec::new();
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let Ok(name) = entry.file_name().into_string() else {
                tracing::warn!(file = ?entry.file_name(), "a file name that is not UTF-8 is ignored");
                continue;
            };
            if name.starts_with('.') || !self.pattern.matches(&name) {
                continue;
            }
            if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn reader(&self, split: &SplitId, position: Option<&str>) -> Result<Box<dyn SplitReader>> {
        let path = self.root.join(split);
        Ok(match self.encode {
            Encode::Parquet => {
                let rows = match position {
                    Some(DONE) => u64::MAX,
                    Some(text) => text.parse().map_err(|_| bad_position(split, text))?,
                    None => 0,
                };
                Box::new(ParquetFile {
                    name: split.clone(),
                    path,
                    schema: self.schema.clone(),
                    rows,
                    reader: None,
                    pending: None,
                })
            }
            _ => {
                let (offset, line) = match position {
                    Some(DONE) => (u64::MAX, 0),
                    Some(text) => parse_text_position(text).ok_or_else(|| bad_position(split, text))?,
                    None => (0, 0),
                };
                Box::new(TextFile {
                    name: split.clone(),
                    path,
                    encode: self.encode.clone(),
                    schema: self.schema.clone(),
                    offset,
                    line,
                    reader: None,
                    block: TextBlock::default(),
                })
            }
        })
    }

    fn discovery_interval(&self) -> Option<Duration> {
        Some(self.poll)
    }
}

fn bad_position(split: &str, position: &str) -> Error {
    Error::internal(format!("bad position \"{position}\" of file \"{split}\""))
}

fn parse_text_position(text: &str) -> Option<(u64, u64)> {
    let (offset, line) = text.split_once(':')?;
    Some((offset.parse().ok()?, line.parse().ok()?))
}

/// The position of a file that could not be read (and is not read again).
const DONE: &str = "done";

/// The dead letter for a whole file that could not be read.
fn unreadable(name: &str, path: &Path, schema: &SchemaRef, error: impl std::fmt::Display) -> Read {
    tracing::warn!(file = %path.display(), %error, "a file of a source could not be read");
    Read::Chunk(SplitChunk {
        data: RecordBatch::new_empty(schema.clone()),
        position: DONE.into(),
        dead_letters: vec![DeadLetter {
            position: name.to_string(),
            payload: String::new(),
            error: error.to_string(),
        }],
    })
}

/// A CSV or JSON-lines file, read line by line from a byte offset.
struct TextFile {
    name: String,
    path: PathBuf,
    encode: Encode,
    schema: SchemaRef,
    /// The byte offset after the last whole line read, and that line's number.
    offset: u64,
    line: u64,
    /// Opened at the first read; `None` after the file vanished.
    reader: Option<BufReader<File>>,
    /// The lines of the last read, whose buffers the next read reuses.
    block: TextBlock,
}

/// A text file's block buffers are kept between reads up to this size.
const BLOCK_BYTES_KEPT_MAX: usize = 4 << 20;

impl TextFile {
    fn open(&mut self) -> std::io::Result<()> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.offset))?;
        self.reader = Some(BufReader::with_capacity(256 << 10, file));
        Ok(())
    }

    /// Reads up to `max_rows` lines into `self.block`; returns the dead letters of lines
    /// that are too long and whether the file ended.
    fn read_block(&mut self, max_rows: usize) -> std::io::Result<(Vec<DeadLetter>, bool)> {
        let header = matches!(self.encode, Encode::Csv { header: true, .. });
        let reader = self.reader.as_mut().expect("opened");
        if self.block.bytes.capacity() > BLOCK_BYTES_KEPT_MAX {
            self.block = TextBlock::default();
        }
        let block = &mut self.block;
        block.bytes.clear();
        block.lines.clear();
        let mut dead = Vec::new();
        let mut eof = false;
        while block.lines.len() < max_rows {
            // Each line is read into the block where it will stay, and taken back out
            // when it is not a row.
            let start = block.bytes.len();
            let read = read_line(reader, &mut block.bytes, LINE_BYTES_MAX + 1)?;
            if read == 0 {
                eof = true;
                break;
            }
            if block.bytes.last() != Some(&b'\n') && read > LINE_BYTES_MAX {
                let payload = String::from_utf8_lossy(&block.bytes[start..start + 1024]).into_owned();
                block.bytes.truncate(start);
                // Skip the rest of an overlong line.
                let mut skipped = read as u64;
                loop {
                    let buf = reader.fill_buf()?;
                    if buf.is_empty() {
                        break;
                    }
                    match memchr::memchr(b'\n', buf) {
                        Some(i) => {
                            reader.consume(i + 1);
                            skipped += i as u64 + 1;
                            break;
                        }
                        None => {
                            let n = buf.len();
                            reader.consume(n);
                            skipped += n as u64;
                        }
                    }
                }
                self.offset += skipped;
                self.line += 1;
                dead.push(DeadLetter {
                    position: format!("{}:{}", self.name, self.line),
                    payload,
                    error: format!("a line of more than {LINE_BYTES_MAX} bytes"),
                });
                continue;
            }
            self.offset += read as u64;
            self.line += 1;
            let mut end = block.bytes.len();
            if block.bytes[end - 1] == b'\n' {
                end -= 1;
            }
            if end > start && block.bytes[end - 1] == b'\r' {
                end -= 1;
            }
            let text = &block.bytes[start..end];
            if (header && self.line == 1) || text.iter().all(u8::is_ascii_whitespace) {
                block.bytes.truncate(start);
                continue;
            }
            block.bytes.truncate(end);
            block.end_line(self.line, start);
        }
        Ok((dead, eof))
    }
}

/// Appends the next line of `reader` to `out`, its line break included, but at most
/// `limit` bytes; returns the bytes read (0 at the end of the file).
fn read_line(reader: &mut impl BufRead, out: &mut Vec<u8>, limit: usize) -> std::io::Result<usize> {
    let mut read = 0;
    while read < limit {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            break;
        }
        let buf = &buf[..buf.len().min(limit - read)];
        let (n, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        out.extend_from_slice(&buf[..n]);
        reader.consume(n);
        read += n;
        if done {
            break;
        }
    }
    Ok(read)
}

#[async_trait]
impl SplitReader for TextFile {
    async fn next(&mut self, max_rows: usize) -> Result<Read> {
        if self.reader.is_none() {
            if self.offset == u64::MAX {
                return Ok(Read::Done);
            }
            if let Err(e) = self.open() {
                self.offset = u64::MAX;
                return Ok(unreadable(&self.name, &self.path, &self.schema, e));
            }
        }
        let (mut dead, eof) = match self.read_block(max_rows.max(1)) {
            Ok(read) => read,
            Err(e) => {
                self.reader = None;
                self.offset = u64::MAX;
                return Ok(unreadable(&self.name, &self.path, &self.schema, e));
            }
        };
        if self.block.lines.is_empty() && dead.is_empty() && eof {
            return Ok(Read::Done);
        }
        let name = &self.name;
        let (data, bad) =
            decode_text(&self.encode, &self.schema, &self.block, &|line| format!("{name}:{line}"))?;
        dead.extend(bad);
        Ok(Read::Chunk(SplitChunk {
            data,
            position: format!("{}:{}", self.offset, self.line),
            dead_letters: dead,
        }))
    }
}

/// A Parquet file, read from a row offset; its columns are matched by name.
struct ParquetFile {
    name: String,
    path: PathBuf,
    schema: SchemaRef,
    /// Rows handed on so far (the position).
    rows: u64,
    reader: Option<ParquetRecordBatchReader>,
    /// Rows decoded but not yet handed on (a batch is cut to each call's `max_rows`).
    pending: Option<RecordBatch>,
}

/// Rows the Parquet reader decodes at once, whatever one call asks for.
const PARQUET_BATCH_ROWS: usize = 8192;

impl ParquetFile {
    fn open(&mut self, batch_rows: usize) -> std::result::Result<(), String> {
        let file = File::open(&self.path).map_err(|e| e.to_string())?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
        // The file's top-level columns that the source declares; the rest are NULL.
        let file_schema = builder.schema().clone();
        let roots = self.schema.fields().iter().filter_map(|f| file_schema.index_of(f.name()).ok());
        let mask = datafusion::parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), roots);
        let reader = builder
            .with_projection(mask)
            .with_offset(self.rows as usize)
            .with_batch_size(batch_rows)
            .build()
            .map_err(|e| e.to_string())?;
        self.reader = Some(reader);
        Ok(())
    }

    /// Up to `max_rows` rows of `data`, keeping the rest for the next call.
    fn hand_on(&mut self, data: RecordBatch, max_rows: usize) -> SplitChunk {
        let take = data.num_rows().min(max_rows.max(1));
        if take < data.num_rows() {
            self.pending = Some(data.slice(take, data.num_rows() - take));
        }
        self.rows += take as u64;
        SplitChunk::new(data.slice(0, take), self.rows.to_string())
    }
}

#[async_trait]
impl SplitReader for ParquetFile {
    async fn next(&mut self, max_rows: usize) -> Result<Read> {
        if self.rows == u64::MAX {
            return Ok(Read::Done);
        }
        if let Some(pending) = self.pending.take() {
            return Ok(Read::Chunk(self.hand_on(pending, max_rows)));
        }
        if self.reader.is_none()
            && let Err(e) = self.open(PARQUET_BATCH_ROWS)
        {
            self.rows = u64::MAX;
            return Ok(unreadable(&self.name, &self.path, &self.schema, e));
        }
        let reader = self.reader.as_mut().expect("opened");
        match reader.next() {
            None => Ok(Read::Done),
            Some(Err(e)) => {
                self.rows = u64::MAX;
                self.reader = None;
                Ok(unreadable(&self.name, &self.path, &self.schema, e))
            }
            Some(Ok(batch)) => match conform(&batch, &self.schema) {
                Ok(data) => Ok(Read::Chunk(self.hand_on(data, max_rows))),
                Err(e) => {
                    // A column that does not cast: the batch's rows are one dead letter.
                    let first = self.rows + 1;
                    self.rows += batch.num_rows() as u64;
                    Ok(Read::Chunk(SplitChunk {
                        data: RecordBatch::new_empty(self.schema.clone()),
                        position: self.rows.to_string(),
                        dead_letters: vec![DeadLetter {
                            position: format!("{}:{first}-{}", self.name, self.rows),
                            payload: String::new(),
                            error: e.to_string(),
                        }],
                    }))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::WriterProperties;

    use super::*;

    #[test]
    fn text_positions_round_trip() {
        assert_eq!(parse_text_position("120:7"), Some((120, 7)));
        assert_eq!(parse_text_position("x"), None);
    }

    /// `rows` bids: auction `1..=rows`, price `10 * auction`, three channels; row groups
    /// of 1,000 rows.
    fn write_bids_parquet(path: &Path, rows: i64) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("auction", DataType::Int64, false),
            Field::new("price", DataType::Int64, false),
            Field::new("channel", DataType::Utf8, false),
            Field::new("unused", DataType::Utf8, true),
        ]));
        let file = File::create(path).unwrap();
        let properties = WriterProperties::builder().set_max_row_group_row_count(Some(1000)).build();
        let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(properties)).unwrap();
        let auctions: Vec<i64> = (1..=rows).collect();
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(auctions.clone())),
                Arc::new(Int64Array::from_iter_values(auctions.iter().map(|a| a * 10))),
                Arc::new(StringArray::from_iter_values(
                    auctions.iter().map(|a| ["web", "app", "api"][*a as usize % 3]),
                )),
                Arc::new(StringArray::from(vec![None::<&str>; rows as usize])),
            ],
        )
        .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    async fn read_all(reader: &mut Box<dyn SplitReader>, max_rows: usize) -> (Vec<i64>, Vec<String>) {
        let mut auctions = Vec::new();
        let mut positions = Vec::new();
        loop {
            match reader.next(max_rows).await.unwrap() {
                Read::Chunk(chunk) => {
                    auctions
                        .extend(chunk.data.column(0).as_primitive::<Int64Type>().values().iter().copied());
                    positions.push(chunk.position);
                }
                Read::Done => return (auctions, positions),
                Read::Pending => panic!("a file is never pending"),
            }
        }
    }

    fn connector(dir: &Path, encode: &str, schema: SchemaRef) -> Arc<dyn SourceConnector> {
        let mut options = Options::new(
            [("posix_fs.root".to_string(), dir.to_string_lossy().into_owned())].into_iter().collect(),
        );
        let format = FormatDef { format: "PLAIN".into(), encode: encode.into(), options: Default::default() };
        build(&mut options, &schema, Some(&format)).unwrap()
    }

    #[tokio::test]
    async fn parquet_files_are_read_by_column_name_and_resume_at_a_row() {
        let dir = tempfile::tempdir().unwrap();
        write_bids_parquet(&dir.path().join("bids.parquet"), 2500);
        let schema = Arc::new(Schema::new(vec![
            Field::new("price", DataType::Int64, true),
            Field::new("auction", DataType::Int32, true),
            Field::new("absent", DataType::Utf8, true),
        ]));
        let source = connector(dir.path(), "PARQUET", schema);
        assert_eq!(source.splits().unwrap(), ["bids.parquet"]);
        let mut reader = source.reader(&"bids.parquet".to_string(), None).unwrap();
        let Read::Chunk(small) = reader.next(3).await.unwrap() else { panic!("rows expected") };
        assert_eq!((small.data.num_rows(), small.position.as_str()), (3, "3"));
        let Read::Chunk(first) = reader.next(697).await.unwrap() else { panic!("rows expected") };
        assert_eq!(first.data.num_rows(), 697);
        assert_eq!(first.position, "700");
        assert_eq!(first.data.column(0).as_primitive::<Int64Type>().value(0), 40);
        assert_eq!(small.data.column(0).as_primitive::<Int64Type>().value(0), 10);
        assert!(small.data.column(2).is_null(0));
        let mut resumed = source.reader(&"bids.parquet".to_string(), Some("700")).unwrap();
        let (prices, positions) = read_all(&mut resumed, 700).await;
        assert_eq!(prices.len(), 1800);
        assert_eq!(prices[0], 7010);
        assert_eq!(positions.last().map(String::as_str), Some("2500"));
    }

    #[tokio::test]
    async fn text_files_resume_after_their_last_whole_line_and_skip_the_header() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.csv"), "auction\n1\n2\n3\nx\n5").unwrap();
        std::fs::write(dir.path().join(".hidden.csv"), "9\n").unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("auction", DataType::Int64, true)]));
        let source = connector(dir.path(), "CSV", schema);
        assert_eq!(source.splits().unwrap(), ["a.csv"]);
        let mut reader = source.reader(&"a.csv".to_string(), None).unwrap();
        let Read::Chunk(first) = reader.next(2).await.unwrap() else { panic!("rows expected") };
        assert_eq!(first.data.column(0).as_primitive::<Int64Type>().values(), &[1, 2]);
        assert_eq!(first.position, "12:3");
        let mut resumed = source.reader(&"a.csv".to_string(), Some(&first.position)).unwrap();
        let Read::Chunk(rest) = resumed.next(10).await.unwrap() else { panic!("rows expected") };
        assert_eq!(rest.data.column(0).as_primitive::<Int64Type>().values(), &[3, 5]);
        assert_eq!(rest.dead_letters.len(), 1);
        assert_eq!(rest.dead_letters[0].position, "a.csv:5");
        assert_eq!(rest.position, "17:6");
        assert!(matches!(resumed.next(10).await.unwrap(), Read::Done));
    }

    #[test]
    fn a_missing_directory_or_format_is_refused() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let mut options =
            Options::new([("posix_fs.root".to_string(), "/no/such/dir".to_string())].into_iter().collect());
        let format = FormatDef { format: "PLAIN".into(), encode: "CSV".into(), options: Default::default() };
        let error = build(&mut options, &schema, Some(&format)).err().unwrap();
        assert_eq!(error.sqlstate().code(), "22023");
        assert!(error.to_string().contains("posix_fs.root"), "{error}");
        let error = build(&mut options, &schema, None).err().unwrap();
        assert_eq!(error.sqlstate().code(), "42601");
    }

    #[tokio::test]
    async fn a_file_that_is_not_parquet_is_one_dead_letter() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.parquet"), "not parquet at all").unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("auction", DataType::Int64, true)]));
        let source = connector(dir.path(), "PARQUET", schema);
        let mut reader = source.reader(&"bad.parquet".to_string(), None).unwrap();
        let Read::Chunk(chunk) = reader.next(100).await.unwrap() else { panic!("a dead letter expected") };
        assert_eq!(chunk.data.num_rows(), 0);
        assert_eq!(chunk.dead_letters.len(), 1);
        assert_eq!(chunk.dead_letters[0].position, "bad.parquet");
        assert!(matches!(reader.next(100).await.unwrap(), Read::Done));
        // Resumed at its position after a crash, it is not read again.
        let mut resumed = source.reader(&"bad.parquet".to_string(), Some(&chunk.position)).unwrap();
        assert!(matches!(resumed.next(100).await.unwrap(), Read::Done));
    }

    /// Writes the Parquet file `sql-tests/source/posix_fs.slt` reads.
    #[test]
    #[ignore = "run by hand to write sql-tests/source/data/bids.parquet"]
    fn write_the_slt_fixture() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql-tests/source/data");
        std::fs::create_dir_all(&dir).unwrap();
        write_bids_parquet(&dir.join("bids.parquet"), 3000);
    }
}
