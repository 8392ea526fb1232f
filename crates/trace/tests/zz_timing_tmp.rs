use std::io::Read;
use std::time::Instant;
#[test]
fn timing() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/google2011/task_events/part-00001-of-00500.csv.gz");
    let t = Instant::now();
    let mut s = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(&p).unwrap())
        .read_to_end(&mut s)
        .unwrap();
    eprintln!("gunzip {:?} {}", t.elapsed(), s.len());
    let t = Instant::now();
    let mut w = cidrcast_trace::TraceWriter::new(Vec::new(), "x").unwrap();
    cidrcast_trace::import_google2011_task_events(&[p.clone()], &Default::default(), &mut w)
        .unwrap();
    let out = w.finish().unwrap();
    eprintln!("import {:?}", t.elapsed());
    let t = Instant::now();
    let n = cidrcast_trace::TraceReader::new(&out[..], "x", Default::default()).count();
    eprintln!("reread {:?} {n}", t.elapsed());
}
