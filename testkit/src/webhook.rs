//! A real HTTP server that receives webhooks: it records every request (headers and body)
//! and answers with the status codes it is told to, so tests can check what a receiver sees
//! and how the sender reacts to errors.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Endpoint, Request, Response, Server};

/// One received request.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    pub body: String,
}

#[derive(Default)]
struct State {
    received: Vec<Delivery>,
    /// Answers for the next requests (then 200).
    answers: VecDeque<u16>,
}

/// The receiver; stops when dropped.
pub struct WebhookReceiver {
    base: String,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct Receive(Arc<Mutex<State>>);

impl Endpoint for Receive {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let body = req.take_body().into_string().await.unwrap_or_default();
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        state.received.push(Delivery {
            path: req.uri().path().to_owned(),
            headers,
            body,
        });
        let code = state.answers.pop_front().unwrap_or(200);
        Ok(Response::builder()
            .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
            .body("ok"))
    }
}

impl WebhookReceiver {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> WebhookReceiver {
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("bind the webhook receiver");
        let addr = *acceptor.local_addr()[0]
            .as_socket_addr()
            .expect("a TCP address");
        let state = Arc::new(Mutex::new(State::default()));
        let endpoint = Receive(state.clone());
        let server = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(endpoint).await;
        });
        WebhookReceiver {
            base: format!("http://{addr}"),
            state,
            server,
        }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Answers the next requests with these status codes, in order.
    pub fn answer_next(&self, codes: &[u16]) {
        self.lock().answers.extend(codes);
    }

    pub fn received(&self) -> Vec<Delivery> {
        self.lock().received.clone()
    }

    /// Waits until `n` requests arrived (panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "webhook receiver: {} of {n} requests after {timeout:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
