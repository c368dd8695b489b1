//! One write per request: ureq hands a request's head and its body to the transport
//! separately, which with `TCP_NODELAY` makes two segments, two wake-ups of the hub and
//! two trips through the loopback network stack for the agent to pay for (measured:
//! about a tenth of the agent's CPU per collection went into `send`). This transport
//! layer keeps what ureq transmits until ureq starts waiting for the answer, then sends
//! it at once; above TLS, so the whole request is also one TLS record.
//!
//! Built on ureq's `unversioned` transport API, which may change between ureq releases.

use ureq::Error;
use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};

/// Wraps whatever transport the chain before it made.
#[derive(Debug, Default)]
pub struct CoalescingConnector;

impl<In: Transport> Connector<In> for CoalescingConnector {
    type Out = Coalescing<In>;

    fn connect(&self, _: &ConnectionDetails, chained: Option<In>) -> Result<Option<Self::Out>, Error> {
        Ok(chained.map(|inner| Coalescing { inner, pending: Vec::new(), timeout: None }))
    }
}

/// A transport whose output leaves when input is awaited.
#[derive(Debug)]
pub struct Coalescing<T> {
    inner: T,
    pending: Vec<u8>,
    /// The send deadline of the earliest output kept.
    timeout: Option<NextTimeout>,
}

impl<T: Transport> Coalescing<T> {
    fn flush(&mut self) -> Result<(), Error> {
        let Some(timeout) = self.timeout.take() else { return Ok(()) };
        let mut sent = 0;
        while sent < self.pending.len() {
            let output = self.inner.buffers().output();
            let n = output.len().min(self.pending.len() - sent);
            output[..n].copy_from_slice(&self.pending[sent..sent + n]);
            self.inner.transmit_output(n, timeout)?;
            sent += n;
        }
        self.pending.clear();
        Ok(())
    }
}

impl<T: Transport> Transport for Coalescing<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        let output = &self.inner.buffers().output()[..amount];
        self.pending.extend_from_slice(output);
        self.timeout.get_or_insert(timeout);
        Ok(())
    }

    fn maybe_await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.flush()?;
        self.inner.maybe_await_input(timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.flush()?;
        self.inner.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        self.pending.is_empty() && self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}
