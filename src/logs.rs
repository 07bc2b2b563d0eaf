//! The production log subscriber: the filter (`RUST_LOG`), the line format and the writer
//! thread.
//!
//! Only `main` installs it; tests and the simulation install their own subscribers, so
//! nothing here may be needed for behaviour. Its cost is per line, and there is a line
//! per request: fields are written as they are when they need no quoting
//! ([`PlainFields`]), time stamps reuse the formatted second ([`Stamp`]), and lines reach
//! stdout in batches.

use std::fmt;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{Config, LogFormat};

/// The log writer thread's buffer: lines queued while it writes go out in one `write(2)`
/// (it flushes whenever its queue runs empty, so a quiet server's lines are not held back).
const LOG_BUFFER_BYTES: usize = 64 * 1024;

/// Installs the log subscriber; an invalid `RUST_LOG` is refused, not replaced by `info`.
///
/// Lines go to stdout through tracing-appender's writer thread, so a request never waits
/// for a `write(2)`. Its queue holds 128 000 lines; past that, lines are dropped rather
/// than stalling requests ([`dropped_lines`]). The returned guard flushes what is
/// buffered when dropped.
pub fn init(config: &Config) -> Result<tracing_appender::non_blocking::WorkerGuard, String> {
    let filter = EnvFilter::try_new(&config.log).map_err(|e| {
        format!(
            "RUST_LOG/--log '{}' is not a valid log filter: {e}",
            config.log
        )
    })?;
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .thread_name("afw-log")
        .finish(std::io::BufWriter::with_capacity(
            LOG_BUFFER_BYTES,
            std::io::stdout(),
        ));
    DROPPED_LINES.get_or_init(|| writer.error_counter());
    // Colour only for a terminal: escape codes in a log file or collector are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        // A person at a terminal gets tracing-subscriber's own colours.
        LogFormat::Pretty if ansi => builder.init(),
        LogFormat::Pretty => builder
            .fmt_fields(PlainFields)
            .event_format(Line::default())
            .init(),
    }
    Ok(guard)
}

/// Lines the log writer dropped because its queue was full.
pub fn dropped_lines() -> usize {
    DROPPED_LINES.get().map_or(0, |c| c.dropped_lines())
}

static DROPPED_LINES: std::sync::OnceLock<tracing_appender::non_blocking::ErrorCounter> =
    std::sync::OnceLock::new();

/// The pretty format without colour: tracing-subscriber's full layout
/// (`2026-12-02T14:12:15.382132Z  INFO request{id=...}: afw::request: method=POST ...`)
/// written piece by piece, with [`PlainFields`] for the span and event fields.
#[derive(Debug, Default)]
pub struct Line {
    stamp: Stamp,
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        self.stamp.format_time(&mut w)?;
        let meta = event.metadata();
        w.write_str(match *meta.level() {
            Level::ERROR => " ERROR ",
            Level::WARN => "  WARN ",
            Level::INFO => "  INFO ",
            Level::DEBUG => " DEBUG ",
            Level::TRACE => " TRACE ",
        })?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                w.write_str(span.name())?;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    w.write_char('{')?;
                    w.write_str(fields)?;
                    w.write_char('}')?;
                }
                w.write_char(':')?;
            }
            w.write_char(' ')?;
        }
        w.write_str(meta.target())?;
        w.write_str(": ")?;
        ctx.format_fields(w.by_ref(), event)?;
        w.write_char('\n')
    }
}

/// The pretty format's fields (tracing-subscriber's `FormatFields` through its visitor):
/// `name=value` pairs separated by spaces, the message bare. A string is written
/// as it is when it is plain (no space, quote, `=`, backslash or control character), else
/// quoted and escaped as `Debug` does, so a value cannot forge a field or a line.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainFields;

impl<'w> MakeVisitor<Writer<'w>> for PlainFields {
    type Visitor = PlainVisitor<'w>;
    fn make_visitor(&self, writer: Writer<'w>) -> Self::Visitor {
        PlainVisitor {
            writer,
            empty: true,
            result: Ok(()),
        }
    }
}

pub struct PlainVisitor<'w> {
    writer: Writer<'w>,
    empty: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// Starts a field: the separator, then `name=` unless it is the message.
    fn name(&mut self, field: &Field) -> fmt::Result {
        if !self.empty {
            self.writer.write_char(' ')?;
        }
        self.empty = false;
        if field.name() == "message" {
            return Ok(());
        }
        let name = field.name();
        self.writer
            .write_str(name.strip_prefix("r#").unwrap_or(name))?;
        self.writer.write_char('=')
    }

    fn record(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.name(field).and_then(|()| value(&mut self.writer));
        }
    }
}

/// Whether a string can be written unquoted and still read back as one value.
fn plain(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b'='))
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let message = field.name() == "message";
        self.record(field, |w| {
            if message || plain(value) {
                w.write_str(value)
            } else {
                write!(w, "{value:?}")
            }
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record(field, |w| write!(w, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, |w| write!(w, "{value:?}"));
    }
}

impl VisitOutput<fmt::Result> for PlainVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for PlainVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

/// RFC 3339 UTC time stamps to the microsecond (`2026-12-02T14:12:15.382132Z`), from the
/// wall clock. The date and time of day are formatted once per second and reused.
#[derive(Debug, Default)]
pub struct Stamp {
    second: Mutex<(u64, String)>,
}

impl FormatTime for Stamp {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let (secs, micros) = (now.as_secs(), now.subsec_micros());
        let mut cached = crate::sync::lock(&self.second);
        if cached.1.is_empty() || cached.0 != secs {
            *cached = (secs, civil(secs));
        }
        write!(w, "{}.{micros:06}Z", cached.1)
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time (the domain's own RFC 3339 formatting, cut).
fn civil(secs: u64) -> String {
    let mut text = crate::domain::model::Timestamp(secs.saturating_mul(1000)).to_rfc3339();
    text.truncate(19);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_known_instants() {
        assert_eq!(civil(0), "1970-01-01T00:00:00");
        assert_eq!(civil(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(civil(1_796_220_735), "2026-12-02T14:12:15");
        assert_eq!(civil(253_402_300_799), "9999-12-31T23:59:59");
    }

    /// Formats events with [`Line`] and [`PlainFields`] into a string.
    fn lines(emit: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(std::sync::Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                crate::sync::lock(&self.0).extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || out.clone())
            .fmt_fields(PlainFields)
            .event_format(Line::default())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = crate::sync::lock(&buffer.0).clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_line_has_the_full_layout_with_plain_values_bare_and_others_quoted() {
        let text = lines(|| {
            let span = tracing::info_span!("request", id = "r-1");
            let _in = span.enter();
            tracing::warn!(target: "afw::x", plain = "a/b{c}", spaced = "two words",
                forged = "x=1 y", n = 7u64, neg = -2i64, ok = true, dbg = ?Some(1), "it failed");
        });
        let (stamp, rest) = text.split_at(27);
        assert_eq!(
            rest,
            "  WARN request{id=r-1}: afw::x: it failed plain=a/b{c} spaced=\"two words\" \
             forged=\"x=1 y\" n=7 neg=-2 ok=true dbg=Some(1)\n"
        );
        // 2026-12-02T14:12:15.382132Z
        let b = stamp.as_bytes();
        assert!(b[..4].iter().all(u8::is_ascii_digit), "{stamp}");
        assert_eq!(
            (b[4], b[10], b[19], b[26]),
            (b'-', b'T', b'.', b'Z'),
            "{stamp}"
        );
    }

    #[test]
    fn a_line_without_a_span_or_message_is_target_then_fields() {
        let text = lines(|| tracing::info!(target: "afw::request", status = 201u64, route = "/x"));
        assert!(
            text.ends_with("Z  INFO afw::request: status=201 route=/x\n"),
            "{text}"
        );
    }

    #[test]
    fn only_plain_strings_go_unquoted() {
        assert!(plain("/api/sessions/{id}"));
        assert!(plain("bench-session-0001"));
        assert!(!plain(""));
        assert!(!plain("two words"));
        assert!(!plain("a=b"));
        assert!(!plain("quo\"te"));
        assert!(!plain("line\nbreak"));
        assert!(!plain("é"));
    }
}
