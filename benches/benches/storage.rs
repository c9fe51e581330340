//! Storage throughput: planning (batch descriptors) and reading (items) per input format, beside
//! a bare `csv`-crate loop over the same CSV file, all from local files.
//!
//! ```text
//! cargo bench -p stepmap-benches --bench storage               # criterion, then a summary table
//! cargo bench -p stepmap-benches --bench storage -- --summary  # only the summary table
//! cargo bench -p stepmap-benches --bench storage -- --rss-csv DIR [GB]
//! cargo bench -p stepmap-benches --bench storage -- --read csv     # one format, for profilers
//! ```
//!
//! The summary prints items/s and MB/s per format and the ratio to the bare `csv` loop. The
//! `--rss-csv` mode generates a CSV of about `GB` gigabytes (default 1) in `DIR` (kept for reuse),
//! plans it into 1,000-item batches, reads it sequentially and reads every 100th batch, so that
//! peak memory can be measured with `/usr/bin/time -v` on the bench executable.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use futures::TryStreamExt;
use serde_json::{json, Value};
use stepmap_storage::{BatchLimits, ItemReader, ItemReaderSpec, StoreConfig, Stores};

const BUCKET: &str = "bench";
const ROWS: usize = 200_000;

/// A deterministic order row; every 16th note is quoted with a comma and a doubled quote,
/// every 64th has a quoted newline.
fn order(i: usize) -> [String; 7] {
    let mut x = (i as u64).wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = |m: u64| {
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51afd7ed558ccd);
        x % m
    };
    let countries = ["us", "de", "fr", "jp", "br", "in", "gb", "ca"];
    let statuses = ["NEW", "PAID", "SHIPPED", "CANCELLED"];
    let note = match i % 64 {
        0 => "\"fragile,\nhandle with care\"".to_string(),
        n if n % 16 == 0 => "\"gift, wrap \"\"nicely\"\"\"".to_string(),
        _ => format!("note {}", next(1000)),
    };
    [
        format!("ord-{i:09}"),
        format!("customer-{}", next(100_000)),
        countries[next(8) as usize].to_string(),
        (1 + next(20)).to_string(),
        format!("{}.{:02}", next(500), next(100)),
        statuses[next(4) as usize].to_string(),
        note,
    ]
}

const HEADER: &str = "order_id,customer,country,qty,unit_price,status,note";

fn write_csv(path: &Path, rows: usize) -> u64 {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create csv"));
    writeln!(out, "{HEADER}").unwrap();
    for i in 0..rows {
        writeln!(out, "{}", order(i).join(",")).unwrap();
    }
    out.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

fn order_json(i: usize) -> Value {
    let [id, customer, country, qty, price, status, note] = order(i);
    json!({"order_id": id, "customer": customer, "country": country, "qty": qty.parse::<u64>().unwrap(),
           "unit_price": price.parse::<f64>().unwrap(), "status": status, "note": note.trim_matches('"')})
}

fn write_parquet(path: &Path, rows: usize) -> u64 {
    use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt64Array};
    use parquet::arrow::ArrowWriter;
    let file = std::fs::File::create(path).unwrap();
    let mut writer: Option<ArrowWriter<std::fs::File>> = None;
    let mut file = Some(file);
    for start in (0..rows).step_by(65_536) {
        let end = (start + 65_536).min(rows);
        let orders: Vec<[String; 7]> = (start..end).map(order).collect();
        let text =
            |c: usize| -> ArrayRef { Arc::new(StringArray::from_iter_values(orders.iter().map(|o| o[c].clone()))) };
        let qty: ArrayRef =
            Arc::new(UInt64Array::from_iter_values(orders.iter().map(|o| o[3].parse::<u64>().unwrap())));
        let price: ArrayRef =
            Arc::new(Float64Array::from_iter_values(orders.iter().map(|o| o[4].parse::<f64>().unwrap())));
        let batch = RecordBatch::try_from_iter([
            ("order_id", text(0)),
            ("customer", text(1)),
            ("country", text(2)),
            ("qty", qty),
            ("unit_price", price),
            ("status", text(5)),
            ("note", text(6)),
        ])
        .unwrap();
        let w = writer.get_or_insert_with(|| ArrowWriter::try_new(file.take().unwrap(), batch.schema(), None).unwrap());
        w.write(&batch).unwrap();
    }
    writer.unwrap().close().unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// The benchmark inputs in a data directory: bucket `bench` holds one object per format.
struct Inputs {
    _dir: tempfile::TempDir,
    data_dir: PathBuf,
    sizes: Vec<(&'static str, u64)>,
}

fn inputs() -> Inputs {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join(BUCKET);
    std::fs::create_dir_all(&bucket).unwrap();
    let csv = write_csv(&bucket.join("orders.csv"), ROWS);
    let mut jsonl = std::io::BufWriter::new(std::fs::File::create(bucket.join("orders.jsonl")).unwrap());
    let mut json = std::io::BufWriter::new(std::fs::File::create(bucket.join("orders.json")).unwrap());
    json.write_all(b"[").unwrap();
    for i in 0..ROWS {
        let row = order_json(i).to_string();
        writeln!(jsonl, "{row}").unwrap();
        if i > 0 {
            json.write_all(b",\n").unwrap();
        }
        json.write_all(row.as_bytes()).unwrap();
    }
    json.write_all(b"]").unwrap();
    drop((jsonl, json));
    let gz = {
        let data = std::fs::read(bucket.join("orders.csv")).unwrap();
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&data).unwrap();
        let bytes = encoder.finish().unwrap();
        std::fs::write(bucket.join("orders.csv.gz"), &bytes).unwrap();
        bytes.len() as u64
    };
    let parquet = write_parquet(&bucket.join("orders.parquet"), ROWS);
    let size = |name: &str| std::fs::metadata(bucket.join(name)).unwrap().len();
    let sizes = vec![
        ("csv", csv),
        ("csv.gz", gz),
        ("jsonl", size("orders.jsonl")),
        ("json", size("orders.json")),
        ("parquet", parquet),
    ];
    Inputs { data_dir: dir.path().to_path_buf(), _dir: dir, sizes }
}

fn spec(format: &str) -> ItemReaderSpec {
    let (config, key) = match format {
        "csv" => (json!({"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"}), "orders.csv"),
        "csv.gz" => (json!({"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"}), "orders.csv.gz"),
        "jsonl" => (json!({"InputType": "JSONL"}), "orders.jsonl"),
        "json" => (json!({"InputType": "JSON"}), "orders.json"),
        _ => (json!({"InputType": "PARQUET"}), "orders.parquet"),
    };
    let config = serde_json::from_value(config).unwrap();
    ItemReaderSpec::new("arn:aws:states:::s3:getObject", &config, &json!({"Bucket": BUCKET, "Key": key}), None).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

async fn read_count(reader: &ItemReader) -> usize {
    let mut n = 0;
    let mut items = reader.items();
    while let Some(item) = items.try_next().await.unwrap() {
        std::hint::black_box(&item);
        n += 1;
    }
    n
}

async fn plan_count(reader: &ItemReader) -> usize {
    reader.plan(&BatchLimits::items(1000), None).await.unwrap().len()
}

/// The bare `csv` crate over the same file: records only.
fn csv_bare(path: &Path) -> usize {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let mut record = csv::ByteRecord::new();
    let mut n = 0;
    while reader.read_byte_record(&mut record).unwrap() {
        std::hint::black_box(&record);
        n += 1;
    }
    n
}

/// The `csv` crate building the same JSON objects as the ItemReader.
fn csv_to_json(path: &Path) -> usize {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    let mut n = 0;
    for record in reader.records() {
        let record = record.unwrap();
        let map: serde_json::Map<String, Value> =
            headers.iter().zip(record.iter()).map(|(h, v)| (h.clone(), Value::String(v.to_string()))).collect();
        std::hint::black_box(Value::Object(map));
        n += 1;
    }
    n
}

fn criterion_benches(inputs: &Inputs, stores: &Arc<Stores>, rt: &tokio::runtime::Runtime) {
    let mut c = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(4)).configure_from_args();
    let csv_path = inputs.data_dir.join(BUCKET).join("orders.csv");
    for (format, bytes) in &inputs.sizes {
        let reader = rt.block_on(ItemReader::open(stores.clone(), spec(format))).unwrap();
        let mut group = c.benchmark_group(format!("storage/{format}"));
        group.throughput(Throughput::Bytes(*bytes));
        group.bench_function("read", |b| b.iter(|| rt.block_on(read_count(&reader))));
        group.bench_function("plan", |b| b.iter(|| rt.block_on(plan_count(&reader))));
        if *format == "csv" {
            group.bench_function("csv_crate_bare", |b| b.iter(|| csv_bare(&csv_path)));
            group.bench_function("csv_crate_to_json", |b| b.iter(|| csv_to_json(&csv_path)));
        }
        group.finish();
    }
    c.final_summary();
}

/// Best of `runs` timings.
fn best(runs: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut n = 0;
    for _ in 0..runs {
        let start = Instant::now();
        n = f();
        best = best.min(start.elapsed());
    }
    (best, n)
}

fn summary(inputs: &Inputs, stores: &Arc<Stores>, rt: &tokio::runtime::Runtime) {
    let csv_path = inputs.data_dir.join(BUCKET).join("orders.csv");
    let csv_bytes = inputs.sizes[0].1;
    let (bare, rows) = best(5, || csv_bare(&csv_path));
    assert_eq!(rows, ROWS);
    let rate =
        |d: Duration, items: usize, bytes: u64| (items as f64 / d.as_secs_f64(), bytes as f64 / 1e6 / d.as_secs_f64());
    println!("\n{ROWS} rows per format; best of 5 runs; MB/s of the stored object (decimal MB)");
    println!("{:<10} {:<18} {:>14} {:>10} {:>16}", "format", "operation", "items/s", "MB/s", "time vs csv bare");
    let line = |format: &str, op: &str, d: Duration, items: usize, bytes: u64| {
        let (ips, mbps) = rate(d, items, bytes);
        println!("{format:<10} {op:<18} {ips:>14.0} {mbps:>10.1} {:>15.2}x", d.as_secs_f64() / bare.as_secs_f64());
    };
    line("csv", "csv_crate_bare", bare, rows, csv_bytes);
    let (d, n) = best(5, || csv_to_json(&csv_path));
    line("csv", "csv_crate_to_json", d, n, csv_bytes);
    for (format, bytes) in &inputs.sizes {
        let reader = rt.block_on(ItemReader::open(stores.clone(), spec(format))).unwrap();
        let (d, n) = best(5, || rt.block_on(read_count(&reader)));
        assert_eq!(n, ROWS, "{format}");
        line(format, "read", d, n, *bytes);
        let (d, _) = best(5, || rt.block_on(plan_count(&reader)));
        line(format, "plan (1000/batch)", d, ROWS, *bytes);
    }
}

/// Plans and reads a generated CSV of about `gigabytes` GB with bounded memory.
fn rss_mode(dir: &Path, gigabytes: f64) {
    let bucket = dir.join(BUCKET);
    std::fs::create_dir_all(&bucket).unwrap();
    let path = bucket.join("big.csv");
    let row_bytes = (0..1000).map(|i| order(i).join(",").len() + 1).sum::<usize>() as f64 / 1000.0;
    let rows = (gigabytes * 1e9 / row_bytes) as usize;
    let wanted = (gigabytes * 1e9) as u64;
    if std::fs::metadata(&path).map_or(true, |m| m.len() < wanted * 95 / 100) {
        let start = Instant::now();
        let bytes = write_csv(&path, rows);
        println!("generated {} ({bytes} bytes, {rows} rows) in {:.1?}", path.display(), start.elapsed());
    }
    let bytes = std::fs::metadata(&path).unwrap().len();
    let rt = runtime();
    let stores = Arc::new(Stores::new(StoreConfig::Local { data_dir: dir.to_path_buf() }));
    let config = serde_json::from_value(json!({"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"})).unwrap();
    let spec = ItemReaderSpec::new(
        "arn:aws:states:::s3:getObject",
        &config,
        &json!({"Bucket": BUCKET, "Key": "big.csv"}),
        None,
    )
    .unwrap();
    let reader = rt.block_on(ItemReader::open(stores, spec)).unwrap();
    let start = Instant::now();
    let plan = rt.block_on(reader.plan(&BatchLimits::items(1000), None)).unwrap();
    let planned: u64 = plan.iter().map(|b| b.items).sum();
    let plan_time = start.elapsed();
    let encoded = serde_json::to_vec(&plan[0]).unwrap().len();
    println!(
        "plan: {} batches, {planned} items in {plan_time:.1?} ({:.0} MB/s); a descriptor is {encoded} bytes of JSON",
        plan.len(),
        bytes as f64 / 1e6 / plan_time.as_secs_f64()
    );
    let start = Instant::now();
    let read = rt.block_on(read_count(&reader));
    let read_time = start.elapsed();
    println!(
        "read: {read} items in {read_time:.1?} ({:.0} items/s, {:.0} MB/s)",
        read as f64 / read_time.as_secs_f64(),
        bytes as f64 / 1e6 / read_time.as_secs_f64()
    );
    assert_eq!(read as u64, planned);
    let start = Instant::now();
    let mut sampled = 0;
    for batch in plan.iter().step_by(100) {
        let items: Vec<_> = rt.block_on(reader.batch_items(batch).try_collect()).unwrap();
        assert_eq!(items.len() as u64, batch.items);
        sampled += items.len();
    }
    println!("batches: read every 100th batch ({sampled} items) in {:.1?}", start.elapsed());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--rss-csv") {
        let dir = PathBuf::from(args.get(at + 1).expect("--rss-csv DIR [GB]"));
        let gigabytes = args.get(at + 2).and_then(|g| g.parse().ok()).unwrap_or(1.0);
        rss_mode(&dir, gigabytes);
        return;
    }
    let inputs = inputs();
    let stores = Arc::new(Stores::new(StoreConfig::Local { data_dir: inputs.data_dir.clone() }));
    let rt = runtime();
    // `--read FORMAT`: read one format ten times (for profilers).
    if let Some(at) = args.iter().position(|a| a == "--read") {
        let format = args.get(at + 1).expect("--read FORMAT");
        let reader = rt.block_on(ItemReader::open(stores.clone(), spec(format))).unwrap();
        for _ in 0..10 {
            assert_eq!(rt.block_on(read_count(&reader)), ROWS);
        }
        return;
    }
    if !args.iter().any(|a| a == "--summary") {
        criterion_benches(&inputs, &stores, &rt);
    }
    summary(&inputs, &stores, &rt);
}
