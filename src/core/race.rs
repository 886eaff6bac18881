//! Racing two futures, the one combinator the session needs (timeouts, aborts), written out
//! so the core keeps no dependencies.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Which of two raced futures finished first.
pub enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Polls `left` then `right`; the first ready wins and the other is dropped (a dropped
/// request aborts, a dropped sleep clears its timer).
pub fn race<A, B>(left: A, right: B) -> Race<A, B>
where
    A: Future + Unpin,
    B: Future + Unpin,
{
    Race { left, right }
}

pub struct Race<A, B> {
    left: A,
    right: B,
}

impl<A: Future + Unpin, B: Future + Unpin> Future for Race<A, B> {
    type Output = Either<A::Output, B::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(a) = Pin::new(&mut self.left).poll(cx) {
            return Poll::Ready(Either::Left(a));
        }
        if let Poll::Ready(b) = Pin::new(&mut self.right).poll(cx) {
            return Poll::Ready(Either::Right(b));
        }
        Poll::Pending
    }
}

/// A future that never resolves: the stand-in for "no abort signal".
pub struct Never;

impl Future for Never {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}
