//! One held partition: where its commit log ends, which record must come next, and the buffer
//! of records since the last batch. Decides, record by record, whether to keep, skip or seek.
//! No IO.

use orch_lake::{CommitEntry, Topic};

use crate::buffer::{Flush, PartitionBuffer};

/// Where a partition stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Reading the head of its commit log: records are not kept.
    Syncing,
    /// Reading the head entry's offsets again to write the files its writer did not.
    Redo(CommitEntry),
    /// Writing new batches.
    Active,
}

/// What to do with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Keep it: the next record of the partition.
    Keep,
    /// Already in the lake or in the buffer: read again (after a rebalance or a seek).
    Again,
    /// Not now (the log is being read): it will be read again.
    Wait,
    /// A record is missing before it: seek back to this offset.
    Seek(i64),
}

#[derive(Debug)]
pub(crate) struct Partition {
    pub topic: Topic,
    pub partition: i32,
    /// The worker's assignment epoch this state belongs to.
    pub epoch: u64,
    pub phase: Phase,
    /// The log place the next batch commits.
    pub seq: u64,
    /// The offset the next record kept must have; `None` when the log is empty (the first
    /// record read starts it).
    pub next: Option<i64>,
    pub buffer: PartitionBuffer,
    /// A seek back to `next` was asked since the last sync.
    pub seeked: bool,
    /// Offsets read and not kept while syncing: the lowest and highest.
    pub waited: Option<(i64, i64)>,
    /// The log must be read again once the batch in flight is done.
    pub sync_pending: bool,
}

impl Partition {
    pub fn new(topic: Topic, partition: i32, epoch: u64) -> Partition {
        Partition {
            topic,
            partition,
            epoch,
            phase: Phase::Syncing,
            seq: 1,
            next: None,
            buffer: PartitionBuffer::new(topic, partition, epoch),
            seeked: false,
            waited: None,
            sync_pending: false,
        }
    }

    /// What to do with the record at `offset`; a kept record moves `next` past it.
    pub fn judge(&mut self, offset: i64) -> Verdict {
        if self.phase == Phase::Syncing {
            self.waited = Some(match self.waited {
                Some((lo, hi)) => (lo.min(offset), hi.max(offset)),
                None => (offset, offset),
            });
            return Verdict::Wait;
        }
        match self.next {
            Some(next) if offset < next => Verdict::Again,
            Some(next) if offset > next && !self.seeked => {
                self.seeked = true;
                Verdict::Seek(next)
            }
            _ => {
                // The next record, or (after a seek that did not bring it back) a gap in the
                // partition itself: records deleted by retention.
                if let Some(next) = self.next
                    && offset > next
                {
                    tracing::warn!(
                        topic = self.topic.as_str(),
                        partition = self.partition,
                        expected = next,
                        offset,
                        "offsets missing from the partition (deleted by retention?): going on from here"
                    );
                }
                self.next = Some(offset + 1);
                Verdict::Keep
            }
        }
    }

    /// The log's head is known: start from it. `head` is the last entry and whether files of
    /// it are missing. Returns the offset to seek to, when records at or after it were read
    /// and not kept while syncing.
    pub fn synced(&mut self, head: Option<CommitEntry>, missing: bool) -> Option<i64> {
        self.buffer = PartitionBuffer::new(self.topic, self.partition, self.epoch);
        self.seeked = false;
        let waited = self.waited.take();
        let (next, seq, phase) = match head {
            None => (waited.map(|(lo, _)| lo), 1, Phase::Active),
            Some(entry) if missing => (Some(entry.first_offset), entry.seq, Phase::Redo(entry)),
            Some(entry) => (Some(entry.next_offset()), entry.seq + 1, Phase::Active),
        };
        self.next = next;
        self.seq = seq;
        self.phase = phase;
        match (next, waited) {
            (Some(next), Some((_, hi))) if hi >= next => {
                self.seeked = true;
                Some(next)
            }
            _ => None,
        }
    }

    /// Starts over from the log (after a fenced commit): nothing held is kept.
    pub fn resync(&mut self) {
        self.phase = Phase::Syncing;
        self.buffer = PartitionBuffer::new(self.topic, self.partition, self.epoch);
        self.waited = None;
    }

    /// The redo batch, once the buffer holds every offset of the entry being redone; the
    /// partition then goes on with new batches after it.
    pub fn take_redo(&mut self) -> Option<(Flush, CommitEntry)> {
        let Phase::Redo(entry) = &self.phase else {
            return None;
        };
        if self
            .buffer
            .last_offset()
            .is_none_or(|last| last < entry.last_offset)
        {
            return None;
        }
        let entry = entry.clone();
        let flush = self.buffer.take()?;
        self.phase = Phase::Active;
        self.seq = entry.seq + 1;
        Some((flush, entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, first: i64, last: i64) -> CommitEntry {
        CommitEntry {
            seq,
            topic: Topic::ListenEvents,
            partition: 0,
            first_offset: first,
            last_offset: last,
            files: Vec::new(),
            writer: "w".into(),
            committed_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn records_wait_while_syncing_then_go_on_from_the_log() {
        let mut p = Partition::new(Topic::ListenEvents, 0, 1);
        assert_eq!(p.judge(5), Verdict::Wait);
        // The log ends at 9: nothing read was at or after 10, no seek.
        assert_eq!(p.synced(Some(entry(3, 5, 9)), false), None);
        assert_eq!((p.seq, p.next), (4, Some(10)));
        assert_eq!(p.judge(6), Verdict::Again);
        assert_eq!(p.judge(10), Verdict::Keep);
        assert_eq!(p.judge(11), Verdict::Keep);
        assert_eq!(p.judge(11), Verdict::Again);
    }

    #[test]
    fn records_past_the_log_read_while_syncing_are_read_again() {
        let mut p = Partition::new(Topic::ListenEvents, 0, 1);
        p.judge(12);
        p.judge(15);
        assert_eq!(p.synced(Some(entry(1, 0, 9)), false), Some(10));
        assert_eq!(
            p.judge(16),
            Verdict::Keep,
            "after the seek, a gap is the partition's"
        );
    }

    #[test]
    fn a_gap_asks_for_one_seek() {
        let mut p = Partition::new(Topic::ListenEvents, 0, 1);
        p.synced(Some(entry(1, 0, 9)), false);
        assert_eq!(p.judge(14), Verdict::Seek(10));
        assert_eq!(p.judge(10), Verdict::Keep);
    }

    #[test]
    fn an_empty_log_starts_at_the_first_record() {
        let mut p = Partition::new(Topic::ListenEvents, 0, 1);
        assert_eq!(p.synced(None, false), None);
        assert_eq!(p.judge(42), Verdict::Keep);
        assert_eq!(p.next, Some(43));
        let mut p = Partition::new(Topic::ListenEvents, 0, 1);
        p.judge(7);
        p.judge(8);
        assert_eq!(
            p.synced(None, false),
            Some(7),
            "records waited for are read again"
        );
    }

    #[test]
    fn a_head_with_missing_files_is_redone_first() {
        let mut p = Partition::new(Topic::ListenEvents, 0, 1);
        p.synced(Some(entry(4, 100, 102)), true);
        assert_eq!(p.next, Some(100));
        let now = chrono::Utc::now();
        for offset in 100..=102 {
            assert_eq!(p.judge(offset), Verdict::Keep);
            p.buffer.append(offset, None, b"{}", Some(0), now).unwrap();
            if offset < 102 {
                assert!(p.take_redo().is_none());
            }
        }
        let (flush, redone) = p.take_redo().unwrap();
        assert_eq!((flush.first_offset, flush.last_offset), (100, 102));
        assert_eq!(redone.seq, 4);
        assert_eq!(
            (p.phase.clone(), p.seq, p.next),
            (Phase::Active, 5, Some(103))
        );
    }
}
