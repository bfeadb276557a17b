//! A `redis-server` on a TLS-only port, with certificates made at run time by `rcgen`.

use super::node::{Probe, RedisNode};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `--tls-auth-clients`: must a client present a certificate signed by the CA?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsAuthClients {
    /// A client certificate is required.
    Yes,
    /// None is asked for.
    No,
    /// None is required, but one that is presented must be valid.
    Optional,
}

impl TlsAuthClients {
    fn as_arg(self) -> &'static str {
        match self {
            TlsAuthClients::Yes => "yes",
            TlsAuthClients::No => "no",
            TlsAuthClients::Optional => "optional",
        }
    }
}

/// A private `redis-server` with `--port 0` (no plain TCP) and `--tls-port`; its PEM files
/// (CA, server pair, client pair, and an unrelated CA with its own client pair) live in a
/// temp dir. Killed on drop.
pub struct TlsRedis {
    node: RedisNode,
    certs: tempfile::TempDir,
}

impl TlsRedis {
    /// Makes the certificates and starts the server.
    pub fn start(auth_clients: TlsAuthClients) -> TlsRedis {
        let certs = tempfile::tempdir().expect("temp dir");
        write_certs(certs.path());
        let file = |name: &str| certs.path().join(name);
        let probe = Probe::Tls {
            ca: file("ca.pem"),
            cert: file("client.pem"),
            key: file("client-key.pem"),
        };
        let args = |port: u16, dir: &Path| -> Vec<OsString> {
            let mut args: Vec<OsString> = vec!["--port".into(), "0".into()];
            args.extend(
                [
                    "--tls-port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--tls-auth-clients",
                    auth_clients.as_arg(),
                ]
                .map(OsString::from),
            );
            for (flag, name) in [
                ("--tls-cert-file", "server.pem"),
                ("--tls-key-file", "server-key.pem"),
                ("--tls-ca-cert-file", "ca.pem"),
            ] {
                args.push(flag.into());
                args.push(file(name).into());
            }
            args.push("--dir".into());
            args.push(dir.into());
            args
        };
        let node = RedisNode::spawn("TLS redis-server", false, &probe, &args);
        TlsRedis { node, certs }
    }

    /// `rediss://127.0.0.1:<tls port>/0`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.node.port())
    }

    /// The TLS port (there is no plain one).
    pub fn port(&self) -> u16 {
        self.node.port()
    }

    /// The CA that signed the server and client certificates (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.certs.path().join("ca.pem")
    }

    /// A CA that signed nothing this server trusts or presents (PEM).
    pub fn wrong_ca_file(&self) -> PathBuf {
        self.certs.path().join("wrong-ca.pem")
    }

    /// A client certificate signed by [`ca_file`](Self::ca_file) (PEM).
    pub fn client_cert_file(&self) -> PathBuf {
        self.certs.path().join("client.pem")
    }

    /// The client certificate's private key (PKCS#8 PEM).
    pub fn client_key_file(&self) -> PathBuf {
        self.certs.path().join("client-key.pem")
    }

    /// A client certificate signed by the wrong CA, which the server must refuse (PEM).
    pub fn wrong_client_cert_file(&self) -> PathBuf {
        self.certs.path().join("wrong-client.pem")
    }

    pub fn wrong_client_key_file(&self) -> PathBuf {
        self.certs.path().join("wrong-client-key.pem")
    }

    /// Runs `redis-cli --tls --cacert <ca> [--cert C --key K] -p <port> <args>`, with the
    /// given client pair if any.
    pub fn cli(&self, ca: &Path, client: Option<(&Path, &Path)>, args: &[&str]) -> Output {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["--tls", "--cacert"]).arg(ca);
        if let Some((cert, key)) = client {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        cmd.args(["-h", "127.0.0.1", "-p", &self.port().to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli")
    }

    /// The server process (pause, resume, kill, log).
    pub fn node(&self) -> &RedisNode {
        &self.node
    }

    pub fn node_mut(&mut self) -> &mut RedisNode {
        &mut self.node
    }
}

/// Writes `ca.pem`, `server.pem`/`server-key.pem` (127.0.0.1, localhost),
/// `client.pem`/`client-key.pem`, `wrong-ca.pem`, `wrong-client.pem`/`wrong-client-key.pem`.
fn write_certs(dir: &Path) {
    let write = |name: &str, pem: String| std::fs::write(dir.join(name), pem).expect("write PEM");
    let (ca_pem, ca) = make_ca("vigil test CA");
    write("ca.pem", ca_pem);
    let (wrong_ca_pem, wrong_ca) = make_ca("vigil unrelated CA");
    write("wrong-ca.pem", wrong_ca_pem);

    let leaf = |issuer: &Issuer<'_, KeyPair>, cn: &str, sans: Vec<String>, usage| {
        let key = KeyPair::generate().expect("key pair");
        let mut params = CertificateParams::new(sans).expect("SANs");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    };
    let sans = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let (cert, key) = leaf(&ca, "localhost", sans, ExtendedKeyUsagePurpose::ServerAuth);
    write("server.pem", cert);
    write("server-key.pem", key);
    let client = ExtendedKeyUsagePurpose::ClientAuth;
    let (cert, key) = leaf(&ca, "vigil-test-client", vec![], client.clone());
    write("client.pem", cert);
    write("client-key.pem", key);
    let (cert, key) = leaf(&wrong_ca, "vigil-wrong-client", vec![], client);
    write("wrong-client.pem", cert);
    write("wrong-client-key.pem", key);
}

fn make_ca(cn: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("key pair");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-signed CA");
    (cert.pem(), Issuer::new(params, key))
}
