//! The configured RADIUS clients, matched by source address: the most specific network wins.

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

impl ClientTable {
    pub(crate) fn new(
        configured: &[RadiusClient],
        require_message_authenticator: bool,
    ) -> Result<Self, RadiusError> {
        let mut clients: Vec<Arc<Client>> = Vec::with_capacity(configured.len());
        for c in configured {
            if c.name.is_empty() {
                return Err(RadiusError::Client {
                    name: c.name.clone(),
                    problem: "the name is empty",
                });
            }
            if c.secret.is_empty() {
                return Err(RadiusError::Client {
                    name: c.name.clone(),
                    problem: "the shared secret is empty",
                });
            }
            let network = c.network.trunc();
            if clients.iter().any(|o| &*o.name == c.name.as_str()) {
                return Err(RadiusError::Client {
                    name: c.name.clone(),
                    problem: "another client has the same name",
                });
            }
            if clients.iter().any(|o| o.network == network) {
                return Err(RadiusError::Client {
                    name: c.name.clone(),
                    problem: "another client has the same address",
                });
            }
            clients.push(Arc::new(Client {
                name: Arc::from(c.name.as_str()),
                network,
                secret: c.secret.clone(),
                require_message_authenticator: c
                    .require_message_authenticator
                    .unwrap_or(require_message_authenticator),
                over_tls: false,
            }));
        }
        clients.sort_by_key(|c| std::cmp::Reverse(c.network.prefix_len()));
        Ok(ClientTable { clients })
    }

    /// The client for a source address; IPv4-mapped IPv6 sources match IPv4 networks.
    pub(crate) fn lookup(&self, ip: IpAddr) -> Option<&Arc<Client>> {
        let ip = ip.to_canonical();
        self.clients.iter().find(|c| c.network.contains(&ip))
    }
}
