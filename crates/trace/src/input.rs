//! Opening input files, gunzipping them transparently.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::{Result, TraceError};

/// The first two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// True when the path's name ends in `.gz`.
pub(crate) fn has_gz_extension(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// Opens `path` for reading; the content is gunzipped when the name ends in `.gz` or the file starts
/// with the gzip magic bytes.
pub(crate) fn open_maybe_gz(path: &Path) -> Result<Box<dyn Read + Send>> {
    let open_err = |action, source| TraceError::Open {
        file: path.display().to_string(),
        action,
        source,
    };
    let file = File::open(path).map_err(|e| open_err("open", e))?;
    let mut buf = BufReader::with_capacity(64 * 1024, file);
    let gz = has_gz_extension(path) || {
        let head = buf.fill_buf().map_err(|e| open_err("read", e))?;
        head.starts_with(&GZIP_MAGIC)
    };
    Ok(if gz {
        Box::new(MultiGzDecoder::new(buf))
    } else {
        Box::new(buf)
    })
}
