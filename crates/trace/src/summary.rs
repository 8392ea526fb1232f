//! A quick overview of a trace: creations, deletions and peak alive, in total and per subdivision.

use std::collections::BTreeMap;
use std::path::Path;

use cidrcast_core::model::{EventKind, Time, VmEvent};

use crate::{ReadOptions, Result, SkipCounts, TraceReader};

/// Counts of one subdivision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubdivisionSummary {
    pub creations: u64,
    pub deletions: u64,
    /// Most VMs alive at once (after an event, events applied in file order).
    pub peak_alive: u64,
    /// Time of the first event reaching `peak_alive`.
    pub peak_time: Time,
    /// VMs alive after the last event.
    pub alive_at_end: u64,
}

/// Counts of a whole trace. Build it with [`summarize`], [`summarize_file`], or
/// [`TraceSummary::add`] event by event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceSummary {
    pub events: u64,
    pub creations: u64,
    pub deletions: u64,
    pub first_time: Option<Time>,
    pub last_time: Option<Time>,
    /// Most VMs alive at once over all subdivisions.
    pub peak_alive: u64,
    pub peak_time: Time,
    pub alive_at_end: u64,
    /// Rows the reader skipped (only with [`ReadOptions::skip_invalid`] in [`summarize_file`]).
    pub skipped: SkipCounts,
    /// Per subdivision, by name.
    pub subdivisions: BTreeMap<String, SubdivisionSummary>,
}

impl TraceSummary {
    /// Accounts for one event. Events are assumed valid (as [`TraceReader`] returns them): a delete
    /// names the subdivision of its create, and follows it.
    pub fn add(&mut self, event: &VmEvent) {
        self.events += 1;
        self.first_time.get_or_insert(event.time);
        self.last_time = Some(event.time);
        let sub = match self.subdivisions.get_mut(&event.subdivision) {
            Some(sub) => sub,
            None => self
                .subdivisions
                .entry(event.subdivision.clone())
                .or_default(),
        };
        match event.kind {
            EventKind::Create => {
                self.creations += 1;
                self.alive_at_end += 1;
                sub.creations += 1;
                sub.alive_at_end += 1;
                if sub.alive_at_end > sub.peak_alive {
                    sub.peak_alive = sub.alive_at_end;
                    sub.peak_time = event.time;
                }
                if self.alive_at_end > self.peak_alive {
                    self.peak_alive = self.alive_at_end;
                    self.peak_time = event.time;
                }
            }
            EventKind::Delete => {
                self.deletions += 1;
                self.alive_at_end = self.alive_at_end.saturating_sub(1);
                sub.deletions += 1;
                sub.alive_at_end = sub.alive_at_end.saturating_sub(1);
            }
        }
    }

    /// The subdivisions, most creations first (ties by name).
    pub fn by_creations(&self) -> Vec<(&str, &SubdivisionSummary)> {
        let mut subs: Vec<_> = self
            .subdivisions
            .iter()
            .map(|(name, s)| (name.as_str(), s))
            .collect();
        subs.sort_by(|a, b| b.1.creations.cmp(&a.1.creations).then(a.0.cmp(b.0)));
        subs
    }
}

/// Summarizes events already in memory (e.g. from [`crate::read_all`]).
pub fn summarize<'a>(events: impl IntoIterator<Item = &'a VmEvent>) -> TraceSummary {
    let mut summary = TraceSummary::default();
    for event in events {
        summary.add(event);
    }
    summary
}

/// Summarizes a trace file while streaming it (the file is validated as it is read).
pub fn summarize_file(path: impl AsRef<Path>, opts: ReadOptions) -> Result<TraceSummary> {
    let mut reader = TraceReader::open(path, opts)?;
    let mut summary = TraceSummary::default();
    for event in reader.by_ref() {
        summary.add(&event?);
    }
    summary.skipped = reader.skipped();
    Ok(summary)
}
