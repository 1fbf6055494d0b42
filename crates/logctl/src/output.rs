//! Printing results: aligned tables for people, JSON for scripts, and a
//! progress bar only when standard output is a terminal.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::Output;

/// Prints in the chosen format.
pub struct Printer {
    format: Output,
}

impl Printer {
    /// A printer for `format`.
    pub fn new(format: Output) -> Self {
        Printer { format }
    }

    /// The chosen format.
    pub fn format(&self) -> Output {
        self.format
    }

    /// Prints a table (rows of cells under `headers`), or its rows as a JSON array of objects.
    pub fn table(&self, headers: &[&str], rows: Vec<Vec<String>>, json: Value) {
        match self.format {
            Output::Json => self.json(&json),
            Output::Table => {
                let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
                for row in &rows {
                    for (w, cell) in widths.iter_mut().zip(row) {
                        *w = (*w).max(cell.chars().count());
                    }
                }
                let line = |cells: Vec<String>| {
                    let padded: Vec<String> = cells
                        .iter()
                        .zip(&widths)
                        .map(|(c, w)| format!("{c:<w$}"))
                        .collect();
                    padded.join("  ").trim_end().to_string()
                };
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "{}",
                    line(headers.iter().map(|h| h.to_string()).collect())
                );
                for row in rows {
                    let _ = writeln!(out, "{}", line(row));
                }
            }
        }
    }

    /// Prints a JSON value on one line.
    pub fn json(&self, value: &Value) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{value}");
    }

    /// Prints a message for people (table mode), or `json` (JSON mode).
    pub fn message(&self, text: &str, json: Value) {
        match self.format {
            Output::Json => self.json(&json),
            Output::Table => println!("{text}"),
        }
    }

    /// A progress bar drawn on standard error while standard output is a
    /// terminal; hidden when it is piped. `total` of `None` is a counter.
    pub fn progress(&self, total: Option<u64>, what: &str) -> ProgressBar {
        if !std::io::stdout().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template("{spinner} {msg} {bar:30} {pos}/{len} ({per_sec})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg} {pos} ({per_sec})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_message(what.to_string());
        bar
    }
}
