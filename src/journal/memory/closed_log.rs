//! The memory journal's closed records, packed end to end.
//!
//! A closed record (answered and delivered) is kept only so that a
//! redelivered request gets the same answer, and tens of thousands of them
//! accumulate between purges. Kept as heap objects (a key of three strings,
//! the answer, the resource type and a map entry: five allocations), each cost
//! about a kilobyte, and the scattered heap they filled made every request
//! slower as it grew.
//!
//! Here a closed record is one entry of bytes appended to a chunk of
//! [`CHUNK_BYTES`], found through a table of slots (its key's hash, its chunk
//! and its offset). Keeping one is a copy into memory written just before;
//! nothing is allocated for it. An entry that is replaced or purged leaves
//! dead bytes behind, and a purge that finds more dead bytes than live ones
//! copies the live entries into fresh chunks.
//!
//! An entry: accepted at (8 bytes, little-endian), request type (1),
//! channel (1), then the lengths (4 bytes each, little-endian) and the bytes
//! of the stack id, the logical id, the request id, the resource type and the
//! answer.

use hashbrown::HashTable;

use super::super::{Channel, RequestKey};
use crate::error::{Error, Result};
use crate::request::RequestType;

/// The size of a chunk. An entry larger than this gets a chunk of its own.
const CHUNK_BYTES: usize = 64 * 1024;

/// The bytes before an entry's fields: accepted at, request type, channel
/// and the five lengths.
const HEADER: usize = 8 + 1 + 1 + FIELDS * 4;

/// Stack id, logical id, request id, resource type, answer.
const FIELDS: usize = 5;

/// Closed records, by key. Every key is given with its hash, computed once by
/// the caller and used for both its shard and its slot.
#[derive(Debug, Default)]
pub(super) struct ClosedLog {
    chunks: Vec<Vec<u8>>,
    slots: HashTable<Slot>,
    /// Bytes of replaced and purged entries still in the chunks.
    dead_bytes: usize,
}

/// Where one entry is.
#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: u64,
    chunk: u32,
    offset: u32,
}

/// A closed record, apart from its key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Closed<'a> {
    pub(super) accepted_at_ms: u64,
    pub(super) request_type: RequestType,
    pub(super) channel: Channel,
    pub(super) resource_type: &'a str,
    /// The answer, as JSON.
    pub(super) answer: &'a [u8],
}

/// An entry, read.
struct Entry<'a> {
    accepted_at_ms: u64,
    request_type: u8,
    channel: u8,
    fields: [&'a [u8]; FIELDS],
}

impl Entry<'_> {
    fn len(&self) -> usize {
        HEADER + self.fields.iter().map(|field| field.len()).sum::<usize>()
    }

    fn is_for(&self, key: &RequestKey) -> bool {
        self.fields[0] == key.stack_id.as_bytes()
            && self.fields[1] == key.logical_resource_id.as_bytes()
            && self.fields[2] == key.request_id.as_bytes()
    }
}

impl ClosedLog {
    /// How many closed records are kept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The closed record of `key`, if one is kept.
    ///
    /// # Errors
    /// [`Error::Journal`] if its entry does not decode, which only a bug
    /// can cause.
    pub(super) fn get(&self, hash: u64, key: &RequestKey) -> Result<Option<Closed<'_>>> {
        let Some(slot) = self.find(hash, key) else {
            return Ok(None);
        };
        closed_of(&read(&self.chunks, slot))
            .map(Some)
            .ok_or_else(|| Error::Journal(format!("the kept record of {key} does not decode")))
    }

    /// Keep `closed` as the closed record of `key`, in place of any earlier
    /// one. False, and nothing kept, when a field is too long to pack (over
    /// 4 GiB), so the caller keeps the record otherwise.
    pub(super) fn insert(&mut self, hash: u64, key: &RequestKey, closed: &Closed<'_>) -> bool {
        let fields = [
            key.stack_id.as_bytes(),
            key.logical_resource_id.as_bytes(),
            key.request_id.as_bytes(),
            closed.resource_type.as_bytes(),
            closed.answer,
        ];
        let mut lengths = [0u32; FIELDS];
        for (length, field) in lengths.iter_mut().zip(fields) {
            match u32::try_from(field.len()) {
                Ok(len) => *length = len,
                Err(_) => return false,
            }
        }
        let len = HEADER + fields.iter().map(|field| field.len()).sum::<usize>();
        let Some((chunk, offset)) = reserve(&mut self.chunks, len) else {
            return false;
        };
        self.remove(hash, key);
        let bytes = &mut self.chunks[chunk as usize];
        bytes.extend_from_slice(&closed.accepted_at_ms.to_le_bytes());
        bytes.push(request_type_byte(closed.request_type));
        bytes.push(channel_byte(closed.channel));
        for length in lengths {
            bytes.extend_from_slice(&length.to_le_bytes());
        }
        for field in fields {
            bytes.extend_from_slice(field);
        }
        let slot = Slot {
            hash,
            chunk,
            offset,
        };
        self.slots.insert_unique(hash, slot, |slot| slot.hash);
        true
    }

    /// Forget the closed record of `key`; true if there was one.
    pub(super) fn remove(&mut self, hash: u64, key: &RequestKey) -> bool {
        let chunks = &self.chunks;
        let found = self.slots.find_entry(hash, |slot| {
            slot.hash == hash && read(chunks, slot).is_for(key)
        });
        match found {
            Ok(occupied) => {
                let (slot, _) = occupied.remove();
                self.dead_bytes += read(&self.chunks, &slot).len();
                true
            }
            Err(_) => false,
        }
    }

    /// Forget the records accepted before `before_ms`; how many.
    pub(super) fn purge(&mut self, before_ms: u64) -> usize {
        let chunks = &self.chunks;
        let mut removed = 0;
        let mut dead_bytes = 0;
        self.slots.retain(|slot| {
            let entry = read(chunks, slot);
            let keep = entry.accepted_at_ms >= before_ms;
            if !keep {
                removed += 1;
                dead_bytes += entry.len();
            }
            keep
        });
        self.dead_bytes += dead_bytes;
        let bytes: usize = self.chunks.iter().map(Vec::len).sum();
        if self.dead_bytes > bytes - self.dead_bytes {
            self.compact();
        }
        removed
    }

    /// Copy the live entries into fresh chunks, dropping the old ones.
    fn compact(&mut self) {
        let old = std::mem::take(&mut self.chunks);
        let chunks = &mut self.chunks;
        // There are never more fresh chunks than old ones, so every entry
        // finds room; one that did not would be dropped, not left pointing
        // at a freed chunk.
        self.slots.retain(|slot| {
            let start = slot.offset as usize;
            let entry = &old[slot.chunk as usize][start..start + read(&old, slot).len()];
            let Some((chunk, offset)) = reserve(chunks, entry.len()) else {
                return false;
            };
            chunks[chunk as usize].extend_from_slice(entry);
            slot.chunk = chunk;
            slot.offset = offset;
            true
        });
        self.slots.shrink_to_fit(|slot| slot.hash);
        self.dead_bytes = 0;
    }

    fn find(&self, hash: u64, key: &RequestKey) -> Option<&Slot> {
        self.slots.find(hash, |slot| {
            slot.hash == hash && read(&self.chunks, slot).is_for(key)
        })
    }
}

/// Room for `len` bytes at the end of the last chunk, or in a new one: the
/// chunk's index and the offset the entry will start at. `None` past 2^32
/// chunks.
fn reserve(chunks: &mut Vec<Vec<u8>>, len: usize) -> Option<(u32, u32)> {
    let fits = chunks
        .last()
        .is_some_and(|chunk| chunk.capacity() - chunk.len() >= len);
    if !fits {
        chunks.push(Vec::with_capacity(len.max(CHUNK_BYTES)));
    }
    let chunk = u32::try_from(chunks.len() - 1).ok()?;
    let offset = u32::try_from(chunks.last()?.len()).ok()?;
    Some((chunk, offset))
}

/// The entry at `slot`. Slots only ever point at whole entries.
fn read<'a>(chunks: &'a [Vec<u8>], slot: &Slot) -> Entry<'a> {
    let bytes = &chunks[slot.chunk as usize][slot.offset as usize..];
    let (header, mut rest) = bytes.split_at(HEADER);
    let mut accepted_at = [0; 8];
    accepted_at.copy_from_slice(&header[..8]);
    let mut fields: [&[u8]; FIELDS] = [&[]; FIELDS];
    for (i, field) in fields.iter_mut().enumerate() {
        let at = 10 + i * 4;
        let mut length = [0; 4];
        length.copy_from_slice(&header[at..at + 4]);
        let (bytes, after) = rest.split_at(u32::from_le_bytes(length) as usize);
        *field = bytes;
        rest = after;
    }
    Entry {
        accepted_at_ms: u64::from_le_bytes(accepted_at),
        request_type: header[8],
        channel: header[9],
        fields,
    }
}

fn closed_of<'a>(entry: &Entry<'a>) -> Option<Closed<'a>> {
    Some(Closed {
        accepted_at_ms: entry.accepted_at_ms,
        request_type: request_type_of(entry.request_type)?,
        channel: channel_of(entry.channel)?,
        resource_type: std::str::from_utf8(entry.fields[3]).ok()?,
        answer: entry.fields[4],
    })
}

fn request_type_byte(request_type: RequestType) -> u8 {
    match request_type {
        RequestType::Create => 0,
        RequestType::Update => 1,
        RequestType::Delete => 2,
    }
}

fn request_type_of(byte: u8) -> Option<RequestType> {
    match byte {
        0 => Some(RequestType::Create),
        1 => Some(RequestType::Update),
        2 => Some(RequestType::Delete),
        _ => None,
    }
}

fn channel_byte(channel: Channel) -> u8 {
    match channel {
        Channel::Async => 0,
        Channel::Sync => 1,
        Channel::FunctionCompute => 2,
    }
}

fn channel_of(byte: u8) -> Option<Channel> {
    match byte {
        0 => Some(Channel::Async),
        1 => Some(Channel::Sync),
        2 => Some(Channel::FunctionCompute),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> RequestKey {
        RequestKey {
            stack_id: format!("stack-{n}"),
            logical_resource_id: "Resource".into(),
            request_id: format!("request-{n}"),
        }
    }

    fn closed(accepted_at_ms: u64, answer: &[u8]) -> Closed<'_> {
        Closed {
            accepted_at_ms,
            request_type: RequestType::Update,
            channel: Channel::FunctionCompute,
            resource_type: "Custom::Thing",
            answer,
        }
    }

    #[test]
    fn entries_come_back_as_kept() {
        let mut log = ClosedLog::default();
        let answers: Vec<Vec<u8>> = (0..3000).map(|n| format!("answer {n}").into()).collect();
        for (n, answer) in answers.iter().enumerate() {
            assert!(log.insert(n as u64, &key(n), &closed(n as u64, answer)));
        }
        assert!(log.chunks.len() > 1, "spans chunks");
        for (n, answer) in answers.iter().enumerate() {
            let kept = log.get(n as u64, &key(n)).expect("decodes");
            assert_eq!(kept, Some(closed(n as u64, answer)));
        }
        assert_eq!(log.get(7, &key(8)).expect("decodes"), None, "wrong hash");
        assert_eq!(log.get(3000, &key(3000)).expect("decodes"), None);
    }

    #[test]
    fn keys_with_one_hash_are_told_apart() {
        let mut log = ClosedLog::default();
        assert!(log.insert(42, &key(1), &closed(1, b"one")));
        assert!(log.insert(42, &key(2), &closed(2, b"two")));
        assert_eq!(log.len(), 2);
        assert_eq!(log.get(42, &key(1)).expect("ok"), Some(closed(1, b"one")));
        assert_eq!(log.get(42, &key(2)).expect("ok"), Some(closed(2, b"two")));
        assert!(log.remove(42, &key(1)));
        assert!(!log.remove(42, &key(1)), "already gone");
        assert_eq!(log.get(42, &key(1)).expect("ok"), None);
        assert_eq!(log.get(42, &key(2)).expect("ok"), Some(closed(2, b"two")));
    }

    #[test]
    fn an_insert_replaces_the_earlier_entry() {
        let mut log = ClosedLog::default();
        assert!(log.insert(5, &key(5), &closed(1, b"first")));
        assert!(log.insert(5, &key(5), &closed(2, b"second")));
        assert_eq!(log.len(), 1);
        assert_eq!(log.get(5, &key(5)).expect("ok"), Some(closed(2, b"second")));
        assert_eq!(
            log.dead_bytes,
            HEADER + "stack-5Resourcerequest-5Custom::Thingfirst".len()
        );
    }

    #[test]
    fn an_entry_larger_than_a_chunk_gets_its_own() {
        let mut log = ClosedLog::default();
        let big = vec![b'x'; CHUNK_BYTES * 2];
        assert!(log.insert(1, &key(1), &closed(1, b"small")));
        assert!(log.insert(2, &key(2), &closed(2, &big)));
        assert!(log.insert(3, &key(3), &closed(3, b"after")));
        assert_eq!(log.get(2, &key(2)).expect("ok"), Some(closed(2, &big)));
        assert_eq!(log.get(1, &key(1)).expect("ok"), Some(closed(1, b"small")));
        assert_eq!(log.get(3, &key(3)).expect("ok"), Some(closed(3, b"after")));
    }

    #[test]
    fn a_purge_removes_the_old_and_compacts_what_is_left() {
        let mut log = ClosedLog::default();
        let answer = vec![b'a'; 500];
        for n in 0..1000 {
            assert!(log.insert(n as u64, &key(n), &closed(n as u64, &answer)));
        }
        let chunks_before = log.chunks.len();
        assert_eq!(log.purge(900), 900);
        assert_eq!(log.len(), 100);
        assert_eq!(log.dead_bytes, 0, "more dead than live: compacted");
        assert!(
            log.chunks.len() < chunks_before / 4,
            "{} chunks",
            log.chunks.len()
        );
        for n in 0..1000 {
            let expected = (n >= 900).then(|| closed(n as u64, &answer));
            assert_eq!(log.get(n as u64, &key(n)).expect("ok"), expected, "{n}");
        }
        assert_eq!(log.purge(950), 50);
        assert_eq!(log.purge(950), 0, "nothing older is left");
        assert_eq!(log.purge(u64::MAX), 50);
        assert!(log.chunks.is_empty(), "all memory returned");
        assert!(log.insert(1, &key(1), &closed(1, b"again")));
        assert_eq!(log.get(1, &key(1)).expect("ok"), Some(closed(1, b"again")));
    }

    #[test]
    fn a_purge_of_few_records_leaves_their_bytes_for_later() {
        let mut log = ClosedLog::default();
        for n in 0..10 {
            assert!(log.insert(n as u64, &key(n), &closed(n as u64, b"answer")));
        }
        assert_eq!(log.purge(2), 2);
        assert!(log.dead_bytes > 0, "not compacted for two of ten");
        assert_eq!(log.get(5, &key(5)).expect("ok"), Some(closed(5, b"answer")));
    }
}
