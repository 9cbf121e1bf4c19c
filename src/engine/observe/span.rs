//! The span of each attempt, boxed and only when a subscriber records it.

#[allow(unused_imports)]
use super::*;

/// The span of the attempt in flight (a `tracing::Span` with feature `tracing`, nothing
/// without), and the request's span, every attempt's parent. The engine's future holds one;
/// each attempt replaces its span.
///
/// Both are boxed together, and only when one of them is enabled: with no subscriber the
/// future every call moves carries a null pointer instead of two spans (80 bytes), and
/// nothing is allocated. With one, the box is made once per request and reused by its
/// attempts.
#[derive(Debug, Default)]
pub(crate) struct AttemptSpan {
    #[cfg(feature = "tracing")]
    spans: Option<Box<Spans>>,
}

/// What an [`AttemptSpan`] boxes.
#[cfg(feature = "tracing")]
#[derive(Debug)]
pub(crate) struct Spans {
    attempt: tracing::Span,
    request: tracing::Span,
}

/// Whether `span` goes to no subscriber. A callsite's interest, cached while a scoped
/// subscriber was the default, can outlive it: its spans are then made, not disabled, for
/// a dispatcher that records nothing. They are not worth the box.
#[cfg(feature = "tracing")]
pub(crate) fn records_nothing(span: &tracing::Span) -> bool {
    span.with_subscriber(|(_, dispatch)| dispatch.is::<tracing::subscriber::NoSubscriber>())
        .unwrap_or(true)
}

/// The span of an [`AttemptSpan`] without one.
#[cfg(feature = "tracing")]
pub(crate) static NO_SPAN: tracing::Span = tracing::Span::none();

impl AttemptSpan {
    /// The request's span, the parent of every attempt's (a disabled one when none).
    #[cfg(feature = "tracing")]
    #[inline]
    pub(crate) fn parent(&self) -> &tracing::Span {
        self.spans.as_ref().map_or(&NO_SPAN, |s| &s.request)
    }

    /// The attempt's span (a disabled one when none).
    #[cfg(feature = "tracing")]
    #[inline]
    pub(crate) fn attempt(&self) -> &tracing::Span {
        self.spans.as_ref().map_or(&NO_SPAN, |s| &s.attempt)
    }

    /// Makes `span` the attempt's.
    #[cfg(feature = "tracing")]
    #[inline]
    pub(crate) fn set_attempt(&mut self, span: tracing::Span) {
        match &mut self.spans {
            Some(spans) => spans.attempt = span,
            None if span.is_disabled() || records_nothing(&span) => {}
            None => {
                self.spans = Some(Box::new(Spans {
                    attempt: span,
                    request: tracing::Span::none(),
                }))
            }
        }
    }

    /// No attempt yet; the attempts' spans will be children of the span current now (when
    /// the request is made), wherever the request's future is polled later.
    #[inline]
    pub(crate) fn for_request() -> Self {
        // (Asked only when some subscriber wants `INFO`: the check is one atomic read.)
        #[cfg(feature = "tracing")]
        if tracing::level_enabled!(tracing::Level::INFO) {
            let request = tracing::Span::current();
            if !request.is_disabled() {
                return AttemptSpan {
                    spans: Some(Box::new(Spans {
                        attempt: tracing::Span::none(),
                        request,
                    })),
                };
            }
        }
        AttemptSpan::default()
    }

    /// Runs `f` inside the span.
    #[inline]
    pub(crate) fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        #[cfg(feature = "tracing")]
        let _entered = self.spans.as_ref().map(|s| s.attempt.enter());
        f()
    }

    /// Enters the span until the guard is dropped (a guard, not a closure, so that what
    /// runs inside is not moved into one).
    #[inline]
    pub(crate) fn enter(&self) -> impl Sized + '_ {
        #[cfg(feature = "tracing")]
        let entered = self.spans.as_ref().map(|s| s.attempt.enter());
        #[cfg(not(feature = "tracing"))]
        let entered = ();
        entered
    }

    /// Ends the span: its duration is the attempt's.
    #[inline]
    pub(crate) fn close(&mut self) {
        #[cfg(feature = "tracing")]
        if let Some(spans) = &mut self.spans {
            if !spans.attempt.is_disabled() {
                spans.attempt = tracing::Span::none();
            }
        }
    }
}
