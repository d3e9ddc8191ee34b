//! Whether an Ogg or Matroska/WebM file was cut short, from its structure alone.
//!
//! Both containers frame every piece of audio with its own length, so a file that ends inside
//! a frame was cut: an interrupted copy from a phone, a download that stopped, a recording
//! whose browser tab closed. symphonia's readers take such an end as the end of the stream and
//! would air half an announcement; the person who sent it still has the whole file, so it is
//! refused at open instead, in one line that says so.
//!
//! Browser recordings (Chromium's MediaRecorder) declare neither the Segment's nor the
//! Clusters' size, so for Matroska the walk goes down to the blocks of a Cluster whose size is
//! unknown. A file that ends exactly between two frames cannot be told from a shorter whole
//! one, and is not refused. Anything the walk does not understand ends it with no verdict: the
//! decoder then judges the file as before.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;

/// How the file was found to be cut, for the one-line error.
pub(crate) type Verdict = Option<String>;

/// Looks at `path` if it is Ogg or Matroska; `None` when it is whole, of another kind, or not
/// understood. Read errors also give `None`: opening the file for decoding reports them.
pub(crate) fn cut_short(path: &Path) -> Verdict {
    let file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let mut reader = Reader {
        inner: BufReader::with_capacity(64 * 1024, file),
        pos: 0,
        len,
    };
    let mut magic = [0u8; 4];
    reader.read_exact(&mut magic).ok()?;
    reader.seek_to(0).ok()?;
    match magic {
        [b'O', b'g', b'g', b'S'] => ogg(&mut reader),
        [0x1a, 0x45, 0xdf, 0xa3] => matroska(&mut reader),
        _ => None,
    }
}

struct Reader {
    inner: BufReader<File>,
    pos: u64,
    len: u64,
}

impl Reader {
    fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn byte(&mut self) -> std::io::Result<u8> {
        let mut b = [0u8; 1];
        self.read_exact(&mut b)?;
        Ok(b[0])
    }

    fn seek_to(&mut self, to: u64) -> std::io::Result<()> {
        // Relative seeks keep the buffer when the target is near, as most frames are short.
        let delta = i64::try_from(to).unwrap_or(i64::MAX) - i64::try_from(self.pos).unwrap_or(0);
        self.inner.seek_relative(delta)?;
        self.pos = to;
        Ok(())
    }

    fn at_end(&self) -> bool {
        self.pos >= self.len
    }
}

fn cut(what: &str, at: u64, len: u64) -> Verdict {
    Some(format!(
        "the file is incomplete: it ends inside {what} that starts at byte {at} \
         ({len} bytes in all), so it was cut short — copy or export the whole recording again"
    ))
}

/// Walks the pages: 27 bytes of header, a segment table, then the body its entries add up to.
fn ogg(r: &mut Reader) -> Verdict {
    let mut header = [0u8; 27];
    loop {
        if r.at_end() {
            return None;
        }
        let start = r.pos;
        match r.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                return cut("an Ogg page", start, r.len)
            }
            Err(_) => return None,
        }
        // Not a page where one should start (version 0, flags in the low 3 bits): damage, not a
        // cut, which the decoder resyncs past.
        if &header[..4] != b"OggS" || header[4] != 0 || header[5] > 7 {
            return None;
        }
        let segments = usize::from(header[26]);
        let mut table = [0u8; 255];
        match r.read_exact(&mut table[..segments]) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                return cut("an Ogg page", start, r.len)
            }
            Err(_) => return None,
        }
        let body: u64 = table[..segments].iter().map(|&s| u64::from(s)).sum();
        let end = r.pos.saturating_add(body);
        if end > r.len {
            return cut("an Ogg page", start, r.len);
        }
        r.seek_to(end).ok()?;
    }
}

/// An EBML element's header: its id, where its data starts, and its size (`None`: unknown).
struct Element {
    id: u32,
    start: u64,
    data: u64,
    size: Option<u64>,
}

const SEGMENT: u32 = 0x1853_8067;
const CLUSTER: u32 = 0x1f43_b675;
/// What a Cluster holds: Timestamp, Position, PrevSize, SimpleBlock, BlockGroup,
/// EncryptedBlock, SilentTracks. Any other id ends a Cluster of unknown size.
const CLUSTER_CHILDREN: [u32; 7] = [0xe7, 0xa7, 0xab, 0xa3, 0xa0, 0xaf, 0x5854];

enum Head {
    Element(Element),
    /// The file ended inside the header of an element starting here.
    Cut(u64),
    /// Not EBML: stop with no verdict.
    Unknown,
}

fn element(r: &mut Reader) -> Head {
    let start = r.pos;
    let Some(id) = vint(r, 4, true) else {
        return if r.pos >= r.len {
            Head::Cut(start)
        } else {
            Head::Unknown
        };
    };
    let Some(raw) = vint(r, 8, false) else {
        return if r.pos >= r.len {
            Head::Cut(start)
        } else {
            Head::Unknown
        };
    };
    Head::Element(Element {
        id: id.value as u32,
        start,
        data: r.pos,
        size: if raw.unknown { None } else { Some(raw.value) },
    })
}

struct Vint {
    value: u64,
    /// All data bits set: the size is unknown (a live stream, a browser recording).
    unknown: bool,
}

/// An EBML variable-length integer of at most `max` bytes; an id keeps its length marker.
fn vint(r: &mut Reader, max: u32, keep_marker: bool) -> Option<Vint> {
    let first = r.byte().ok()?;
    let length = first.leading_zeros() + 1;
    if length > max {
        return None;
    }
    let marker = 0x80u8 >> (length - 1);
    let mut value = u64::from(if keep_marker { first } else { first & !marker });
    let mut all_ones = first & !marker == marker - 1;
    for _ in 1..length {
        let b = r.byte().ok()?;
        all_ones &= b == 0xff;
        value = (value << 8) | u64::from(b);
    }
    Some(Vint {
        value,
        unknown: !keep_marker && all_ones,
    })
}

fn matroska(r: &mut Reader) -> Verdict {
    // Inside a Cluster of unknown size, and so walking its blocks.
    let mut in_open_cluster = false;
    loop {
        if r.at_end() {
            return None;
        }
        let e = match element(r) {
            Head::Element(e) => e,
            Head::Cut(at) => return cut("a WebM element", at, r.len),
            Head::Unknown => return None,
        };
        if in_open_cluster && !CLUSTER_CHILDREN.contains(&e.id) {
            in_open_cluster = false;
        }
        match (e.id, e.size) {
            // Its children follow: a Segment is always entered, as its own size only says
            // where the file should end, and an unknown-size Cluster too.
            (SEGMENT, Some(size)) => {
                if e.data.saturating_add(size) > r.len {
                    return cut("the WebM segment", e.start, r.len);
                }
            }
            (SEGMENT, None) => {}
            (CLUSTER, None) => in_open_cluster = true,
            (_, Some(size)) => {
                let end = e.data.saturating_add(size);
                if end > r.len {
                    let what = if e.id == CLUSTER || CLUSTER_CHILDREN.contains(&e.id) {
                        "a block of WebM audio"
                    } else {
                        "a WebM element"
                    };
                    return cut(what, e.start, r.len);
                }
                if r.seek_to(end).is_err() {
                    return None;
                }
            }
            // Another element of unknown size: its end cannot be found without knowing it.
            (_, None) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    }

    fn ogg_page(body: &[u8]) -> Vec<u8> {
        let mut page = b"OggS".to_vec();
        page.extend_from_slice(&[0; 22]);
        let mut table = Vec::new();
        let mut left = body.len();
        loop {
            let s = left.min(255);
            table.push(s as u8);
            left -= s;
            if s < 255 {
                break;
            }
        }
        page.push(table.len() as u8);
        page.extend_from_slice(&table);
        page.extend_from_slice(body);
        page
    }

    #[test]
    fn an_ogg_file_cut_inside_a_page_is_cut_short() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut whole = ogg_page(&[1; 300]);
        whole.extend(ogg_page(&[2; 100]));
        assert_eq!(cut_short(&write(dir.path(), "a.ogg", &whole)), None);
        let first = ogg_page(&[1; 300]).len();
        // Between pages: a shorter whole file.
        assert_eq!(
            cut_short(&write(dir.path(), "b.ogg", &whole[..first])),
            None
        );
        for at in [first + 10, first + 30, whole.len() - 1] {
            let verdict = cut_short(&write(dir.path(), "c.ogg", &whole[..at]));
            assert!(
                verdict.as_deref().is_some_and(|v| v.contains("incomplete")),
                "cut at {at}: {verdict:?}"
            );
        }
    }

    /// An element: id bytes, a size of `size_len` bytes (all ones when `unknown`), the data.
    fn ebml(id: &[u8], data: &[u8], size_len: usize, unknown: bool) -> Vec<u8> {
        let mut out = id.to_vec();
        let mut size = vec![0u8; size_len];
        if unknown {
            size.fill(0xff);
        } else {
            for (i, b) in size.iter_mut().enumerate() {
                *b = (data.len() >> (8 * (size_len - 1 - i))) as u8;
            }
        }
        size[0] =
            (size[0] & 0xffu8.checked_shr(size_len as u32).unwrap_or(0)) | (0x80 >> (size_len - 1));
        out.extend(size);
        out.extend_from_slice(data);
        out
    }

    fn browser_webm() -> Vec<u8> {
        let mut file = ebml(
            &[0x1a, 0x45, 0xdf, 0xa3],
            &ebml(&[0x42, 0x82], b"webm", 1, false),
            1,
            false,
        );
        let mut segment = ebml(&[0x18, 0x53, 0x80, 0x67], &[], 8, true);
        segment.extend(ebml(&[0x15, 0x49, 0xa9, 0x66], &[0xec, 0x80], 1, false));
        for cluster in 0..3u8 {
            segment.extend(ebml(&[0x1f, 0x43, 0xb6, 0x75], &[], 8, true));
            segment.extend(ebml(&[0xe7], &[cluster], 1, false));
            for _ in 0..4 {
                segment.extend(ebml(&[0xa3], &[0x81, 0, 0, 0x80, 7, 7, 7, 7], 1, false));
            }
        }
        file.extend(segment);
        file
    }

    #[test]
    fn a_browser_webm_cut_inside_a_block_is_cut_short() {
        let dir = tempfile::tempdir().expect("tempdir");
        let whole = browser_webm();
        assert_eq!(cut_short(&write(dir.path(), "a.webm", &whole)), None);
        let verdict = cut_short(&write(dir.path(), "b.webm", &whole[..whole.len() - 3]));
        assert!(
            verdict
                .as_deref()
                .is_some_and(|v| v.contains("a block of WebM audio")),
            "{verdict:?}"
        );
        // Inside the header of the last block.
        let verdict = cut_short(&write(dir.path(), "c.webm", &whole[..whole.len() - 9]));
        assert!(verdict.is_some(), "{verdict:?}");
        // Between blocks: a shorter whole recording.
        assert_eq!(
            cut_short(&write(dir.path(), "d.webm", &whole[..whole.len() - 10])),
            None
        );
    }

    #[test]
    fn a_known_size_segment_past_the_end_is_cut_short() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = ebml(&[0x1a, 0x45, 0xdf, 0xa3], &[], 1, false);
        let inner = ebml(&[0x15, 0x49, 0xa9, 0x66], &[0xec, 0x80], 1, false);
        file.extend(ebml(&[0x18, 0x53, 0x80, 0x67], &inner, 4, false));
        assert_eq!(cut_short(&write(dir.path(), "a.webm", &file)), None);
        let verdict = cut_short(&write(dir.path(), "b.webm", &file[..file.len() - 1]));
        assert!(verdict.is_some(), "{verdict:?}");
    }

    #[test]
    fn other_files_and_garbage_get_no_verdict() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            cut_short(&write(dir.path(), "a.mp3", b"ID3\x04 and more")),
            None
        );
        assert!(cut_short(&write(dir.path(), "b.ogg", b"OggS")).is_some());
        let mut junk = vec![0x1a, 0x45, 0xdf, 0xa3, 0x80];
        junk.extend([0u8; 64]);
        assert_eq!(cut_short(&write(dir.path(), "c.webm", &junk)), None);
        assert_eq!(cut_short(&dir.path().join("missing.ogg")), None);
    }
}
