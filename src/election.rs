//! Leader election over etcd (feature `etcd`): exactly one daemon of those sharing a store runs
//! the reconciler and the router deployer. Each daemon holds an etcd lease of `ttl` seconds,
//! renewed every `ttl / 3`, and campaigns on `{prefix}election/reconciler` with it; etcd makes
//! the oldest live campaigner the leader. A leader that dies stops renewing: its lease expires
//! after at most `ttl` and the next campaigner leads, so a takeover takes at most `ttl` plus one
//! renewal round. A leader that cannot renew within `ttl` (it lost etcd) stops leading at once,
//! by its own clock, before etcd could elect another.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cidrcast_server::leadership::Leadership;
use cidrcast_store::etcd_client::{self, Client};

/// The election as the daemon sees it.
pub struct EtcdElection {
    leader: AtomicBool,
    /// Until when this daemon's lease is surely alive (last renewal + ttl, by the local clock).
    valid_until: Mutex<Option<Instant>>,
    current: Mutex<String>,
    /// The campaigners' ids (every live daemon), and when they were read.
    live: Mutex<Option<(Instant, Vec<String>)>>,
    id: String,
}

/// How often the leader and the live daemons are read.
const WATCH_INTERVAL: Duration = Duration::from_secs(3);
/// A list of live daemons older than this is not trusted.
const LIVE_MAX_AGE: Duration = Duration::from_secs(10);

impl Leadership for EtcdElection {
    fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
            && self
                .valid_until
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|t| Instant::now() < t)
    }
    fn shared(&self) -> bool {
        true
    }
    fn live_nodes(&self) -> Option<Vec<String>> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.as_ref()
            .filter(|(at, _)| at.elapsed() < LIVE_MAX_AGE)
            .map(|(_, ids)| ids.clone())
    }
    fn describe(&self) -> String {
        if self.is_leader() {
            format!("leader ({})", self.id)
        } else {
            format!(
                "follower ({}; leader: {})",
                self.id,
                self.current.lock().unwrap_or_else(|p| p.into_inner())
            )
        }
    }
}

impl EtcdElection {
    /// Starts campaigning on `runtime` as `id` (a name unique among the daemons, e.g. the host
    /// name and listen address) with leases of `ttl`.
    pub fn start(
        runtime: &tokio::runtime::Runtime,
        client: Client,
        prefix: &str,
        id: String,
        ttl: Duration,
    ) -> Arc<EtcdElection> {
        let e = Arc::new(EtcdElection {
            leader: AtomicBool::new(false),
            valid_until: Mutex::new(None),
            current: Mutex::new("unknown".to_string()),
            live: Mutex::new(None),
            id,
        });
        let name = format!("{prefix}election/reconciler");
        runtime.spawn(campaign_forever(e.clone(), client, name, ttl));
        e
    }

    fn set_leader(&self, on: bool) {
        let was = self.leader.swap(on, Ordering::SeqCst);
        if was != on {
            if on {
                tracing::info!(id = %self.id, "elected: this daemon runs the reconciler");
            } else {
                tracing::warn!(id = %self.id, "no longer the leader");
            }
        }
    }
}

async fn campaign_forever(e: Arc<EtcdElection>, client: Client, name: String, ttl: Duration) {
    loop {
        let why = match term(&e, client.clone(), &name, ttl).await {
            Ok(()) => "lease expired".to_string(),
            Err(err) => err.to_string(),
        };
        e.set_leader(false);
        tracing::warn!(id = %e.id, "leader election: {why}; campaigning again");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One lease: campaign with it, lead while it is renewed. Returns when it is lost.
async fn term(
    e: &EtcdElection,
    mut client: Client,
    name: &str,
    ttl: Duration,
) -> Result<(), etcd_client::Error> {
    let ttl_s = ttl.as_secs().max(2) as i64;
    let lease = client.lease_grant(ttl_s, None).await?.id();
    let (mut keeper, mut stream) = client.lease_keep_alive(lease).await?;
    let every = ttl / 3;
    *e.valid_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + ttl);
    // Renews the lease every ttl/3; returns when a renewal fails or the lease is gone.
    let renew = async {
        loop {
            tokio::time::sleep(every).await;
            let sent = Instant::now();
            let answer = tokio::time::timeout(every, async {
                keeper.keep_alive().await?;
                stream.message().await
            })
            .await;
            match answer {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {
                    *e.valid_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(sent + ttl);
                }
                Ok(Ok(_)) => return Ok::<(), etcd_client::Error>(()),
                Ok(Err(err)) => return Err(err),
                // No answer in time: keep trying until the lease is surely gone.
                Err(_) => {
                    let gone = e
                        .valid_until
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .is_none_or(|t| Instant::now() >= t);
                    if gone {
                        return Ok(());
                    }
                }
            }
        }
    };
    tokio::pin!(renew);
    let mut campaigner = client.clone();
    let campaign = campaigner.campaign(name, e.id.clone(), lease);
    let campaigned = tokio::select! {
        r = campaign => r.map(|_| ()),
        r = &mut renew => r.and(Err(etcd_client::Error::InvalidArgs("lease lost while campaigning".into()))),
    };
    if let Err(err) = campaigned {
        // Leave the queue at once rather than when the lease expires.
        let _ = client.lease_revoke(lease).await;
        return Err(err);
    }
    e.set_leader(true);
    *e.current.lock().unwrap_or_else(|p| p.into_inner()) = e.id.clone();
    let result = (&mut renew).await;
    e.set_leader(false);
    // Give the leadership up at once (another daemon need not wait for the lease to expire).
    let _ = client.lease_revoke(lease).await;
    result
}

/// Who leads now (for followers' `describe`) and which daemons are alive (every campaigner holds
/// a key `{name}/{lease}` with its id as value while its lease lives), refreshed every
/// [`WATCH_INTERVAL`].
pub async fn watch_leader(e: Arc<EtcdElection>, mut client: Client, prefix: String) {
    let name = format!("{prefix}election/reconciler");
    let campaigners = format!("{name}/");
    loop {
        if let Ok(r) = client.leader(name.clone()).await {
            if let Some(kv) = r.kv() {
                *e.current.lock().unwrap_or_else(|p| p.into_inner()) =
                    kv.value_str().unwrap_or("?").to_string();
            }
        }
        let read = client
            .get(
                campaigners.clone(),
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await;
        if let Ok(r) = read {
            let ids = r
                .kvs()
                .iter()
                .filter_map(|kv| kv.value_str().ok().map(str::to_string))
                .collect();
            *e.live.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), ids));
        }
        tokio::time::sleep(WATCH_INTERVAL).await;
    }
}
