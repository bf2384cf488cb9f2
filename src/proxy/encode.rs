//! Encodes records: a fetch result's draft becomes its gzip member(s) and payload digest, inline
//! when small, on the blocking pool when big, and a spilled response into a file of its own.

use std::rc::Rc;

use bytes::Bytes;

use super::context::WorkerCtx;
use crate::archive::cdx::payload_digest;
use crate::archive::from_file::{encode_record, FileMember, FileRecord, Payload};
use crate::archive::payload_digest::body_of;
use crate::archive::record::{mark_private, Codec};
use crate::archive::warc;
use crate::clock::UtcTime;
use crate::error::Error;
use crate::fetch::spill::Spill;

/// Payloads above this are compressed on the blocking pool.
const INLINE_GZIP_LIMIT: usize = 256 * 1024;

/// What a record is made of, before it is encoded (on the blocking pool when big).
pub(super) enum Draft {
    /// An ARC record: header line and payload.
    Arc { header: String, payload: Vec<u8> },
    /// A WARC response record and its request record.
    Exchange {
        url: String,
        ip: std::net::IpAddr,
        date: UtcTime,
        response: Vec<u8>,
        request: Bytes,
        /// `WARC-Warcinfo-ID` (`ArcWriter::warcinfo_id`).
        warcinfo: String,
    },
    /// A WARC metadata record for a failure: `fields` say what liveweb answered and why.
    Failure {
        url: String,
        ip: Option<std::net::IpAddr>,
        date: UtcTime,
        warcinfo: String,
        fields: Vec<u8>,
        code: &'static str,
    },
}

impl Draft {
    fn payload_len(&self) -> usize {
        match self {
            Draft::Arc { payload, .. } => payload.len(),
            Draft::Exchange { response, .. } => response.len(),
            Draft::Failure { fields, .. } => fields.len(),
        }
    }
}

/// An encoded record, ready to append.
pub(super) struct Encoded {
    /// The record's gzip member (marked private if asked), then any record that goes with it.
    pub(super) member: Bytes,
    /// The length of what follows the record in `member`.
    pub(super) trailer_len: usize,
    /// The payload digest (the CDX's, and WARC's `WARC-Payload-Digest`).
    pub(super) digest: String,
    /// A WARC response's `WARC-Record-ID`.
    pub(super) record_id: Option<String>,
}

/// A WARC record (header block and content) as one member, marked private if asked, then
/// its request record as another; and the length of the second (the write's trailer).
pub(super) fn with_request(
    codec: Codec,
    private: bool,
    (record, content): (&warc::WarcRecord, &[u8]),
    (request, sent): (&warc::WarcRecord, &[u8]),
) -> (Vec<u8>, usize) {
    let mut member = codec.encode_parts(record.head.as_bytes(), content, warc::RECORD_END);
    if private {
        member = mark_private(member);
    }
    let follow = codec.encode_parts(request.head.as_bytes(), sent, warc::RECORD_END);
    member.extend_from_slice(&follow);
    (member, follow.len())
}

fn encode_now(draft: Draft, codec: Codec, private: bool) -> Encoded {
    let mark = |member: Vec<u8>| {
        if private {
            mark_private(member)
        } else {
            member
        }
    };
    match draft {
        Draft::Arc { header, payload } => Encoded {
            member: Bytes::from(mark(codec.encode(&header, &payload))),
            trailer_len: 0,
            digest: payload_digest(&payload),
            record_id: None,
        },
        Draft::Exchange {
            url,
            ip,
            date,
            response,
            request,
            warcinfo,
        } => {
            let digest = payload_digest(&response);
            let target = warc::Target {
                url: &url,
                ip: Some(ip),
                date: &date,
                warcinfo: &warcinfo,
            };
            let resp = warc::response(&target, &response, &digest);
            let req = warc::request(&target, &request, &resp.id);
            let (member, trailer_len) =
                with_request(codec, private, (&resp, &response), (&req, &request));
            Encoded {
                member: Bytes::from(member),
                trailer_len,
                digest,
                record_id: Some(resp.id),
            }
        }
        Draft::Failure {
            url,
            ip,
            date,
            warcinfo,
            fields,
            code,
        } => {
            let target = warc::Target {
                url: &url,
                ip,
                date: &date,
                warcinfo: &warcinfo,
            };
            let meta = warc::failure(&target, &fields, code);
            Encoded {
                member: Bytes::from(mark(codec.encode_parts(
                    meta.head.as_bytes(),
                    &fields,
                    warc::RECORD_END,
                ))),
                trailer_len: 0,
                digest: payload_digest(&fields),
                record_id: None,
            }
        }
    }
}

/// Encodes a record: inline when small, on the blocking pool when big.
pub(super) async fn encode(draft: Draft, codec: Codec, private: bool) -> Result<Encoded, Error> {
    if draft.payload_len() <= INLINE_GZIP_LIMIT {
        return Ok(encode_now(draft, codec, private));
    }
    monoio::spawn_blocking(move || encode_now(draft, codec, private))
        .await
        .map_err(|_| Error::Internal("compression task was cancelled"))
}

/// A spilled response on its way into a record.
struct Spilled {
    record: FileRecord,
    /// Where the payload digest starts (after the first head, as `payload_digest` reads it).
    digest_from: u64,
    /// The response said chunked: its framing is not digested.
    chunked: bool,
    spill: Spill,
    private: bool,
}

impl Draft {
    /// The record of a response whose bytes were spilled to `spill` (its payload here is only
    /// the heads, read for where the payload digest starts).
    fn spilled(self, spill: Spill, private: bool) -> Result<Spilled, Error> {
        let (record, digest_from) = match self {
            Draft::Arc { header, payload } => (FileRecord::Arc { header }, body_of(&payload)),
            Draft::Exchange {
                url,
                ip,
                date,
                request,
                response,
                warcinfo,
            } => {
                let from = body_of(&response);
                (
                    FileRecord::Warc {
                        url,
                        ip,
                        date,
                        request,
                        warcinfo,
                    },
                    from,
                )
            }
            Draft::Failure { .. } => return Err(Error::Internal("a failure record spilled")),
        };
        Ok(Spilled {
            record,
            digest_from: digest_from.0 as u64,
            chunked: digest_from.1,
            spill,
            private,
        })
    }
}

/// Encodes a spilled response's record into a file of its own, on the blocking pool, in
/// bounded memory (`archive::from_file::encode_record`).
pub(super) async fn encode_spilled(
    ctx: &Rc<WorkerCtx>,
    draft: Draft,
    spill: Spill,
    private: bool,
) -> Result<FileMember, Error> {
    let s = draft.spilled(spill, private)?;
    let storage = |e: std::io::Error| Error::Storage(e.to_string());
    let payload = s.spill.reader().map_err(storage)?;
    let len = s.spill.len();
    let codec = ctx.shared.config.archive.codec();
    let dir = ctx.spill.dir.clone();
    monoio::spawn_blocking(move || {
        let source = Payload {
            file: &payload,
            len,
            digest_from: s.digest_from,
            chunked: s.chunked,
        };
        encode_record(&s.record, &source, codec, s.private, &dir)
    })
    .await
    .map_err(|_| Error::Internal("compression task was cancelled"))?
    .map_err(storage)
}
