//! What the index does not keep about a stored record, read back from the response head in
//! its record: validators and Vary for a revalidation or a client's conditional request,
//! and for a record restored from disk, the RFC 9111 facts forward mode decides on. The
//! head comes from the hot shard when the record is there, else from the start of its
//! record in the file (inflated only as far as the head).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use flate2::{Decompress, FlushDecompress, Status};

use super::context::WorkerCtx;
use crate::archive::format::{payload_at, PayloadAt};
use crate::archive::warc::{self, RefersTo};
use crate::archive::ArcFile;
use crate::error::Error;
use crate::http::cache::{response_facts, reuse_for, ResponseFacts, Reuse};
use crate::http::request::{Header, RequestHead};
use crate::http::response::MAX_RESPONSE_HEADERS;
use crate::index::{ticks, Facts, StoredRecord};

/// The most of a record read to find its response head: a head is bounded far below this
/// when it arrives (`http::response`), so a record whose head ends later is not one of ours.
const HEAD_LIMIT: usize = 128 * 1024;
/// Compressed bytes read per step.
const STEP: usize = 16 * 1024;

/// Whether a forward-mode request asks something only the stored validators answer.
pub fn needs_validators(req: &RequestHead) -> bool {
    ["if-none-match", "if-modified-since", "if-range"]
        .iter()
        .any(|name| req.header(name).is_some())
}

/// The stored response's final head (after any interim 1xx), parsed for its cache facts.
pub async fn read_facts(ctx: &WorkerCtx, record: &StoredRecord) -> Result<ResponseFacts, Error> {
    Ok(read_stored(ctx, record).await?.facts)
}

/// What a stored record's start says: its response's cache facts and, for a WARC record,
/// what a revisit of it names.
pub struct StoredHead {
    pub facts: ResponseFacts,
    pub refers: Option<RefersTo>,
}

pub async fn read_stored(ctx: &WorkerCtx, record: &StoredRecord) -> Result<StoredHead, Error> {
    let plain = read_plain_start(ctx, record).await?;
    let head = final_head(&plain).ok_or(Error::Internal("stored record has no response head"))?;
    let refers = warc::parse_header(&plain).and_then(|(_, h)| {
        Some(RefersTo {
            id: h.id.map(str::to_owned),
            target: h.target?.to_owned(),
            date: h.date?.to_owned(),
            payload_digest: h.payload_digest.map(str::to_owned),
        })
    });
    Ok(StoredHead {
        facts: response_facts(head),
        refers,
    })
}

/// The record's reuse rules in full: its facts as the index holds them, with what only its
/// head says (validators, and Vary values as `request` has them: the key that found it
/// carries the same ones).
pub fn reuse_of(
    record: &StoredRecord,
    head: &ResponseFacts,
    request: &[Header],
    ttl: Duration,
) -> Reuse {
    let from_head = reuse_for(record.status.code, head, request, SystemTime::now(), ttl);
    let f = record.facts;
    Reuse {
        shareable: f.shareable(),
        credentialed: f.credentialed(),
        forward_private: f.forward_private(),
        lifetime: u64::from(f.lifetime),
        initial_age: record.age(Instant::now()),
        validate_always: f.validate_always(),
        fetched_from: None,
        updated_fields: record.updated_fields.clone(),
        ..from_head
    }
}

/// The facts of a record restored from disk, from its head: as they were worked out when it
/// was archived, for an anonymous request (a credentialed one is never restored, being
/// marked private). Returns them and the ticks its age counts from.
pub fn restored_facts(record: &StoredRecord, head: &ResponseFacts, ttl: Duration) -> (Facts, i64) {
    let archived_age = record.age(Instant::now());
    let archived = SystemTime::now()
        .checked_sub(Duration::from_secs(archived_age))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let reuse = reuse_for(record.status.code, head, &[], archived, ttl);
    let initial = i64::try_from(reuse.initial_age)
        .unwrap_or(i64::MAX)
        .saturating_mul(ticks::PER_SECOND);
    (Facts::of(&reuse), record.born.saturating_sub(initial))
}

/// The start of the record, decoded: up to its response head at least (or all of it).
async fn read_plain_start(ctx: &WorkerCtx, record: &StoredRecord) -> Result<Vec<u8>, Error> {
    let (decoded, member) = {
        let hot = ctx.hot.borrow();
        let decoded = hot
            .get_decoded(&record.loc)
            .filter(|d| !d.plain.is_empty())
            .map(|d| d.plain);
        (decoded, hot.get(&record.loc))
    };
    if let Some(plain) = decoded {
        return Ok(plain[..plain.len().min(HEAD_LIMIT)].to_vec());
    }
    let file = ctx
        .shared
        .files
        .get(record.loc.file_id)
        .ok_or(Error::Internal("stored record's file is gone"))?;
    match member {
        Some(member) => decode_start(&file, &member),
        None => read_from_file(&file, record).await,
    }
}

/// Decodes the start of a member held in memory.
fn decode_start(file: &ArcFile, member: &[u8]) -> Result<Vec<u8>, Error> {
    if !file.gzip {
        return Ok(member[..member.len().min(HEAD_LIMIT)].to_vec());
    }
    let mut out = Vec::new();
    inflate_more(&mut Decompress::new_gzip(15), member, &mut out)?;
    Ok(out)
}

/// Reads the record from its file step by step until its response head is in.
async fn read_from_file(file: &Arc<ArcFile>, record: &StoredRecord) -> Result<Vec<u8>, Error> {
    let storage = |e: std::io::Error| Error::Storage(e.to_string());
    let reader = file.reader().map_err(storage)?;
    let (offset, len) = (record.loc.offset, record.loc.len);
    let mut inflate = Decompress::new_gzip(15);
    let mut out = Vec::new();
    let mut buf = Vec::with_capacity(STEP);
    let mut pos = 0u64;
    while pos < len && out.len() < HEAD_LIMIT {
        let want = (len - pos).min(STEP as u64) as usize;
        buf = reader
            .read(buf, offset + pos, want)
            .await
            .map_err(storage)?;
        pos += want as u64;
        let done = if file.gzip {
            inflate_more(&mut inflate, &buf, &mut out)?
        } else {
            out.extend_from_slice(&buf);
            false
        };
        if done || final_head(&out).is_some() {
            break;
        }
    }
    Ok(out)
}

/// Inflates `input` onto `out`, up to `HEAD_LIMIT` bytes; whether the member ended.
fn inflate_more(inflate: &mut Decompress, input: &[u8], out: &mut Vec<u8>) -> Result<bool, Error> {
    let bad = || Error::Internal("stored record does not inflate");
    let mut used = 0;
    while used < input.len() && out.len() < HEAD_LIMIT {
        out.reserve(STEP);
        let before = (inflate.total_in(), inflate.total_out());
        let status = inflate
            .decompress_vec(&input[used..], out, FlushDecompress::None)
            .map_err(|_| bad())?;
        used += (inflate.total_in() - before.0) as usize;
        if status == Status::StreamEnd {
            return Ok(true);
        }
        if inflate.total_in() == before.0 && inflate.total_out() == before.1 {
            return Err(bad());
        }
    }
    Ok(false)
}

/// The final response head in a decoded record's start, once it is whole.
fn final_head(plain: &[u8]) -> Option<&[u8]> {
    let PayloadAt::Found { start, .. } = payload_at(plain) else {
        return None;
    };
    let mut rest = plain.get(start..)?;
    loop {
        let mut storage = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut parsed = httparse::Response::new(&mut storage);
        let httparse::Status::Complete(n) = parsed.parse(rest).ok()? else {
            return None;
        };
        // An interim response (not a protocol switch) comes before the final one.
        match parsed.code {
            Some(code) if (100..200).contains(&code) && code != 101 => rest = &rest[n..],
            _ => return Some(&rest[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_head_is_found_past_interim_responses() {
        let record = b"http://a/ 127.0.0.1 20261206000000 text/html 99\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nETag: \"x\"\r\n\r\nbody";
        let head = final_head(record).expect("whole head");
        assert_eq!(head, b"HTTP/1.1 200 OK\r\nETag: \"x\"\r\n\r\n");
        assert_eq!(response_facts(head).etag.as_deref(), Some("\"x\""));
        assert!(final_head(&record[..70]).is_none(), "cut inside the head");
    }

    #[test]
    fn a_gzip_member_is_inflated_only_as_far_as_asked() {
        use std::io::Write;
        let mut plain =
            b"http://a/ 127.0.0.1 20261206000000 text/html 1\nHTTP/1.1 200 OK\r\n\r\n".to_vec();
        plain.extend(std::iter::repeat_n(b'x', 4 * HEAD_LIMIT));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).expect("encode");
        let member = gz.finish().expect("encode");
        let mut out = Vec::new();
        let ended =
            inflate_more(&mut Decompress::new_gzip(15), &member, &mut out).expect("inflates");
        assert!(!ended);
        assert!(out.len() >= HEAD_LIMIT && out.len() < HEAD_LIMIT + STEP + 1);
        assert!(final_head(&out).is_some());
        assert!(inflate_more(
            &mut Decompress::new_gzip(15),
            b"not gzip at all",
            &mut Vec::new()
        )
        .is_err());
    }
}
