//! The configured RADIUS clients, matched by source address (the most specific network
//! wins), and the one list of rules a set of clients must keep ([`check_clients`]).

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use zeroize::Zeroizing;

use super::error::RadiusError;
use super::RadiusClient;

/// Parses a client address as configured: an IP (a single host) or a CIDR network.
pub fn parse_client_network(s: &str) -> Result<IpNet, ipnet::AddrParseError> {
    match s.parse::<IpAddr>() {
        Ok(ip) => Ok(IpNet::from(ip)),
        Err(_) => s.parse::<IpNet>(),
    }
}

pub(crate) struct Client {
    pub name: Arc<str>,
    pub network: IpNet,
    pub secret: Zeroizing<Vec<u8>>,
    pub require_message_authenticator: bool,
    /// Reached over TLS (RFC 6614): the connection already protects every attribute.
    pub over_tls: bool,
}

pub(crate) struct ClientTable {
    /// Sorted by prefix length, longest first, so the first match is the most specific.
    clients: Vec<Arc<Client>>,
}

/// What a set of configured RADIUS clients may break, or risk: the one list of the
/// clients' rules, checked for the configuration (`--check-config` and the start, once) and
/// by every [`ClientTable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFinding {
    EmptyName,
    EmptySecret,
    SameName,
    /// Two clients on one network: a request could not tell which shared secret is meant.
    SameAddress {
        other: String,
        network: IpNet,
    },
    /// A warning: a shared secret shorter than [`MIN_SECRET_LEN`].
    ShortSecret,
    /// A warning: `require_message_authenticator = false` on this client.
    NoMessageAuthenticator,
}

/// Shared secrets shorter than this are warned about (RFC 2865 §3 asks for at least 16).
pub const MIN_SECRET_LEN: usize = 16;

impl ClientFinding {
    /// A warning leaves the client usable; anything else refuses the configuration.
    pub fn is_warning(&self) -> bool {
        self.problem().is_none()
    }

    /// The sentence the configuration check says about client `name`.
    pub fn sentence(&self, name: &str) -> String {
        match self {
            ClientFinding::SameName => format!("radius client name {name:?} appears twice"),
            ClientFinding::SameAddress { other, network } => format!(
                "radius clients {other:?} and {name:?} have the same address {network}: a request could not tell which shared secret is meant"
            ),
            ClientFinding::ShortSecret => format!(
                "radius client {name:?}: the shared secret is shorter than {MIN_SECRET_LEN} bytes; use a long random one"
            ),
            ClientFinding::NoMessageAuthenticator => format!(
                "radius client {name:?}: require_message_authenticator = false accepts requests without integrity protection (BlastRADIUS, CVE-2024-3596); turn it on once the gateway sends Message-Authenticator"
            ),
            ClientFinding::EmptyName | ClientFinding::EmptySecret => {
                format!("radius client {name:?}: {}", self.problem().unwrap_or(""))
            }
        }
    }

    /// The problem as [`RadiusError::Client`] says it; none for a warning.
    fn problem(&self) -> Option<&'static str> {
        match self {
            ClientFinding::EmptyName => Some("the name is empty"),
            ClientFinding::EmptySecret => Some("the shared secret is empty"),
            ClientFinding::SameName => Some("another client has the same name"),
            ClientFinding::SameAddress { .. } => Some("another client has the same address"),
            ClientFinding::ShortSecret | ClientFinding::NoMessageAuthenticator => None,
        }
    }
}

/// Every finding about `clients`, client by client in their order, each with the client's
/// name. Networks compare with their host bits cleared.
pub fn check_clients(clients: &[RadiusClient]) -> Vec<(String, ClientFinding)> {
    let mut found = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let mut note = |f| found.push((c.name.clone(), f));
        let earlier = &clients[..i];
        if c.name.is_empty() {
            note(ClientFinding::EmptyName);
        }
        if c.secret.is_empty() {
            note(ClientFinding::EmptySecret);
        } else if c.secret.len() < MIN_SECRET_LEN {
            note(ClientFinding::ShortSecret);
        }
        if earlier.iter().any(|o| o.name == c.name) {
            note(ClientFinding::SameName);
        }
        let network = c.network.trunc();
        if let Some(o) = earlier.iter().rev().find(|o| o.network.trunc() == network) {
            note(ClientFinding::SameAddress {
                other: o.name.clone(),
                network,
            });
        }
        if c.require_message_authenticator == Some(false) {
            note(ClientFinding::NoMessageAuthenticator);
        }
    }
    found
}

impl ClientTable {
    /// The table of `configured`, refused on the first rule of [`check_clients`] it breaks.
    pub(crate) fn new(
        configured: &[RadiusClient],
        require_message_authenticator: bool,
    ) -> Result<Self, RadiusError> {
        if let Some((name, problem)) = check_clients(configured)
            .into_iter()
            .find_map(|(name, f)| f.problem().map(|p| (name, p)))
        {
            return Err(RadiusError::Client { name, problem });
        }
        let mut clients: Vec<Arc<Client>> = configured
            .iter()
            .map(|c| {
                Arc::new(Client {
                    name: Arc::from(c.name.as_str()),
                    network: c.network.trunc(),
                    secret: c.secret.clone(),
                    require_message_authenticator: c
                        .require_message_authenticator
                        .unwrap_or(require_message_authenticator),
                    over_tls: false,
                })
            })
            .collect();
        clients.sort_by_key(|c| std::cmp::Reverse(c.network.prefix_len()));
        Ok(ClientTable { clients })
    }

    /// The client for a source address; IPv4-mapped IPv6 sources match IPv4 networks.
    pub(crate) fn lookup(&self, ip: IpAddr) -> Option<&Arc<Client>> {
        let ip = ip.to_canonical();
        self.clients.iter().find(|c| c.network.contains(&ip))
    }
}
