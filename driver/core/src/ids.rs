//! Connection and listener ids. An id is 64 bits: an engine-wide sequence number (the high
//! [`SEQ_BITS`]) above an index (the low [`INDEX_BITS`]). A connection's index is its record
//! index in its handle, so a lookup by id reads one entry of a dense table instead of searching
//! (issue 12); a listener's index is [`LISTENER_INDEX`], which no connection has. The sequence
//! number makes every id unique within a boot, whatever handle or index it names, and an id
//! carries no kernel address. When the sequence numbers run out (after 2^44 ids: at a million
//! connections a second, half a year of uptime) new connections and listeners are refused,
//! never given an id already used.

/// Low bits holding the index.
pub const INDEX_BITS: u32 = 20;

/// High bits holding the sequence number.
pub const SEQ_BITS: u32 = 64 - INDEX_BITS;

/// The index every listener id has: never a connection's (see [`MAX_CONNECTIONS`]).
pub const LISTENER_INDEX: usize = (1 << INDEX_BITS) - 1;

const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

/// The most connections a handle can hold: record indexes are `0..MAX_CONNECTIONS`, below
/// [`LISTENER_INDEX`].
pub const MAX_CONNECTIONS: usize = LISTENER_INDEX;

/// The id of a connection with sequence number `seq` at record index `index`; `None` when
/// `seq` does not fit (the sequence numbers ran out, or `seq` is 0, which no id has) or the
/// index is not a connection's.
pub fn connection(seq: u64, index: usize) -> Option<u64> {
    if index >= MAX_CONNECTIONS {
        return None;
    }
    compose(seq, index)
}

/// The id of a listener with sequence number `seq`; `None` when `seq` does not fit.
pub fn listener(seq: u64) -> Option<u64> {
    compose(seq, LISTENER_INDEX)
}

/// The index an id holds (a record index for a connection id; whether the record really is
/// that connection's is for the table to check).
pub fn index_of(id: u64) -> usize {
    // INDEX_MASK < 2^20 fits every usize this code builds for.
    usize::try_from(id & INDEX_MASK).unwrap_or(usize::MAX)
}

fn compose(seq: u64, index: usize) -> Option<u64> {
    if seq == 0 || seq >> SEQ_BITS != 0 {
        return None;
    }
    Some(seq << INDEX_BITS | u64::try_from(index).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_index_and_differ_by_sequence_number() {
        let a = connection(1, 5).unwrap();
        let b = connection(2, 5).unwrap();
        assert_ne!(
            a, b,
            "the same index under another sequence number is another id"
        );
        assert_eq!(index_of(a), 5);
        assert_eq!(index_of(b), 5);
        let l = listener(3).unwrap();
        assert_eq!(index_of(l), LISTENER_INDEX);
        assert_ne!(l, connection(3, MAX_CONNECTIONS - 1).unwrap());
        assert_eq!(connection(3, MAX_CONNECTIONS), None, "a listener's index");
    }

    #[test]
    fn sequence_numbers_that_do_not_fit_are_refused_not_wrapped() {
        let last = (1u64 << SEQ_BITS) - 1;
        assert_eq!(connection(last, 0), Some(last << INDEX_BITS));
        assert_eq!(connection(last + 1, 0), None);
        assert_eq!(listener(u64::MAX), None);
        assert_eq!(connection(0, 0), None, "no id is 0");
    }
}
