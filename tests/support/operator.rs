//! An in-process operator (stores + every controller + the layouter loop) scoped to one test
//! namespace, with short intervals, that can be stopped and started again like a restart.

use std::sync::Arc;
use std::time::Duration;

use panoptes::controllers::{Context, Tunables};
use panoptes::run::Shutdown;
use tokio::task::JoinSet;

use super::TestNamespace;

/// One running operator instance.
pub struct Operator {
    /// Its reconcilers' context (live stats, fleet, node clients) for assertions.
    pub ctx: Arc<Context>,
    stop: tokio::sync::watch::Sender<bool>,
    controllers: JoinSet<()>,
    watches: JoinSet<()>,
}

/// Test logging, controlled by `PANOPTES_TEST_LOG` (off by default).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PANOPTES_TEST_LOG")
                .unwrap_or_else(|_| "off".into()),
        )
        .with_test_writer()
        .try_init();
}

impl Operator {
    /// Starts every controller against `ns` with test tunables.
    pub fn start(ns: &TestNamespace) -> Self {
        Self::start_with(ns, Self::tunables(ns))
    }

    /// The test tunables: short intervals, `ns` as the system namespace.
    pub fn tunables(ns: &TestNamespace) -> Tunables {
        Tunables {
            node_resync: Duration::from_millis(500),
            delete_grace: Duration::from_secs(3),
            system_namespace: ns.name.clone(),
            // Every in-process operator of a test binary shares the grace (it is
            // process-wide): short, so Stalled shows within a test's patience.
            missing_grace: Duration::from_secs(2),
            ..Default::default()
        }
    }

    /// Starts every controller with the given tunables.
    pub fn start_with(ns: &TestNamespace, tunables: Tunables) -> Self {
        Self::start_as(ns, ns.client.clone(), tunables)
    }

    /// Starts every controller talking to the API server with `client` (say through a
    /// relay, as another user).
    pub fn start_as(ns: &TestNamespace, client: kube::Client, tunables: Tunables) -> Self {
        init_logging();
        let mut watches = JoinSet::new();
        let ctx = Arc::new(Context::new(
            &super::shared_as(ns, client, &mut watches),
            tunables,
        ));
        let (stop, shutdown) = Shutdown::new();
        let mut controllers = JoinSet::new();
        panoptes::controllers::spawn_all(&ctx, || shutdown.clone().wait(), true, &mut controllers);
        Self {
            ctx,
            stop,
            controllers,
            watches,
        }
    }

    /// Kills the instance like SIGKILL would: every task is dropped mid-flight.
    pub async fn kill(mut self) {
        self.controllers.abort_all();
        self.watches.abort_all();
        while self.controllers.join_next().await.is_some() {}
        while self.watches.join_next().await.is_some() {}
    }

    /// Stops every controller (in-flight reconciles finish) and the watches.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let all = async {
            while let Some(r) = self.controllers.join_next().await {
                r.expect("a controller panicked");
            }
        };
        // Like `panoptes run`: reconciles stuck on a slow node are abandoned after the grace.
        if tokio::time::timeout(panoptes::run::SHUTDOWN_GRACE, all)
            .await
            .is_err()
        {
            self.controllers.abort_all();
        }
        self.watches.abort_all();
    }
}
