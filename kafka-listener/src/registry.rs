//! The registry of an application's listener containers, and the weak handle to it that
//! extractors use. It sits below the runtime (which fills it) and beside the container; the
//! listener module sees the handle only as an opaque value.

use std::any::Any;
use std::sync::{Arc, OnceLock};

use crate::container::ListenerContainer;
use crate::listener::ListenerContext;

/// Every listener container of an [`Application`](crate::Application), by id: look one up to pause, resume, stop
/// or start it (Spring's `KafkaListenerEndpointRegistry`). Cheap to clone; also an extractor,
/// so a handler can take `registry: ListenerRegistry`.
#[derive(Debug, Clone, Default)]
pub struct ListenerRegistry {
    pub(crate) containers: Arc<OnceLock<Vec<ListenerContainer>>>,
}

/// A registry handle that does not keep the containers alive (containers hold one in their
/// extractor context: a strong one would make a cycle).
#[derive(Debug, Clone)]
pub(crate) struct WeakRegistry(std::sync::Weak<OnceLock<Vec<ListenerContainer>>>);

impl WeakRegistry {
    pub(crate) fn upgrade(&self) -> Option<ListenerRegistry> {
        self.0
            .upgrade()
            .map(|containers| ListenerRegistry { containers })
    }
}

impl ListenerRegistry {
    pub(crate) fn downgrade(&self) -> WeakRegistry {
        WeakRegistry(Arc::downgrade(&self.containers))
    }

    /// The weak handle as [`ListenerContext`] carries it.
    pub(crate) fn handle(&self) -> Arc<dyn Any + Send + Sync> {
        Arc::new(self.downgrade())
    }

    /// The container of listener `id`.
    pub fn container(&self, id: &str) -> Option<ListenerContainer> {
        self.containers
            .get()?
            .iter()
            .find(|c| c.listener_id() == id)
            .cloned()
    }

    /// The listener ids, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.containers
            .get()
            .map(|all| all.iter().map(|c| c.listener_id().to_owned()).collect())
            .unwrap_or_default()
    }
}

impl crate::listener::FromRecord for ListenerRegistry {
    fn from_record(
        _: &crate::ConsumerRecord,
        cx: &ListenerContext,
    ) -> std::result::Result<Self, crate::ExtractError> {
        cx.registry
            .as_ref()
            .and_then(|handle| handle.downcast_ref::<WeakRegistry>())
            .and_then(WeakRegistry::upgrade)
            .ok_or(crate::ExtractError::Unavailable(
                "no ListenerRegistry outside a running Application",
            ))
    }
}

static GLOBAL_REGISTRY: OnceLock<WeakRegistry> = OnceLock::new();

/// Makes `registry` the one [`registry()`] returns (the first application started by
/// [`run`](crate::run) or [`run_with`](crate::run_with) in this process).
pub(crate) fn set_global(registry: &ListenerRegistry) {
    let _ = GLOBAL_REGISTRY.set(registry.downgrade());
}

/// The registry of the application started by [`run`](crate::run) or [`run_with`](crate::run_with) (`None` before it
/// started, after it shut down, or when the application was built with
/// [`Application::builder`](crate::Application::builder)).
pub fn registry() -> Option<ListenerRegistry> {
    GLOBAL_REGISTRY.get().and_then(WeakRegistry::upgrade)
}
