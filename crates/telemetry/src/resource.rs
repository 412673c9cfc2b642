//! The OpenTelemetry resource: who is emitting (service, instance, environment, host,
//! process, SDK).

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::TelemetryResourceDetector;

use crate::ServiceInfo;
use crate::config::TelemetryConfig;

/// The identity the resource resolved to; also used for `build_info` and the startup log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedService {
    /// `service.name`.
    pub name: String,
    /// `service.version`.
    pub version: String,
    /// `service.instance.id`.
    pub instance_id: String,
    /// `deployment.environment.name`, when known.
    pub environment: Option<String>,
}

/// Resolves identity with the spec's precedence: `OTEL_SERVICE_NAME` over
/// `OTEL_RESOURCE_ATTRIBUTES` over the code's [`ServiceInfo`].
pub fn resolve_service(service: &ServiceInfo, config: &TelemetryConfig) -> ResolvedService {
    let attr = |key: &str| config.resource_attributes.get(key).cloned();
    ResolvedService {
        name: config
            .service_name
            .clone()
            .or_else(|| attr("service.name"))
            .unwrap_or_else(|| service.name.to_owned()),
        version: config
            .service_version
            .clone()
            .or_else(|| attr("service.version"))
            .unwrap_or_else(|| service.version.to_owned()),
        instance_id: attr("service.instance.id")
            .or_else(|| config.hostname.clone())
            .unwrap_or_else(generated_instance_id),
        environment: attr("deployment.environment.name").or_else(|| config.environment.clone()),
    }
}

/// Builds the resource shared by every signal.
pub fn build(service: &ResolvedService, config: &TelemetryConfig) -> Resource {
    let mut attributes: Vec<KeyValue> = config
        .resource_attributes
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    attributes.push(KeyValue::new("service.name", service.name.clone()));
    attributes.push(KeyValue::new("service.version", service.version.clone()));
    attributes.push(KeyValue::new(
        "service.instance.id",
        service.instance_id.clone(),
    ));
    if let Some(env) = &service.environment {
        attributes.push(KeyValue::new("deployment.environment.name", env.clone()));
    }
    if !config.resource_attributes.contains_key("host.name")
        && let Some(host) = host_name(config)
    {
        attributes.push(KeyValue::new("host.name", host));
    }
    attributes.push(KeyValue::new("host.arch", std::env::consts::ARCH));
    attributes.push(KeyValue::new("os.type", std::env::consts::OS));
    attributes.push(KeyValue::new("process.pid", i64::from(std::process::id())));
    if let Some(exe) = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
    {
        attributes.push(KeyValue::new("process.executable.name", exe));
    }
    attributes.push(KeyValue::new("process.runtime.name", "rust"));
    Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(attributes)
        .build()
}

fn host_name(config: &TelemetryConfig) -> Option<String> {
    config.hostname.clone().or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    })
}

/// A random 128-bit id in UUID text form, for instances without a `HOSTNAME`.
fn generated_instance_id() -> String {
    let bits: u128 = rand::random();
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> TelemetryConfig {
        let map: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TelemetryConfig::from_lookup(|k| map.get(k).cloned()).unwrap()
    }

    const SERVICE: ServiceInfo = ServiceInfo {
        name: "code-name",
        version: "1.0.0",
        catalogs: &[],
    };

    #[test]
    fn service_name_precedence_follows_the_spec() {
        assert_eq!(resolve_service(&SERVICE, &config(&[])).name, "code-name");
        let c = config(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs")]);
        assert_eq!(resolve_service(&SERVICE, &c).name, "from-attrs");
        let c = config(&[
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"),
            ("OTEL_SERVICE_NAME", "from-var"),
        ]);
        assert_eq!(resolve_service(&SERVICE, &c).name, "from-var");
    }

    #[test]
    fn instance_id_comes_from_hostname_or_is_generated() {
        let c = config(&[("HOSTNAME", "pod-7")]);
        assert_eq!(resolve_service(&SERVICE, &c).instance_id, "pod-7");
        let a = resolve_service(&SERVICE, &config(&[])).instance_id;
        let b = resolve_service(&SERVICE, &config(&[])).instance_id;
        assert_eq!(a.len(), 36);
        assert_ne!(a, b);
    }

    #[test]
    fn resource_carries_identity_host_process_and_sdk() {
        let c = config(&[
            ("ENVIRONMENT", "prod"),
            ("OTEL_RESOURCE_ATTRIBUTES", "team=vision"),
            ("HOSTNAME", "h1"),
        ]);
        let resource = build(&resolve_service(&SERVICE, &c), &c);
        let get = |k: &'static str| {
            resource
                .get(&opentelemetry::Key::from_static_str(k))
                .map(|v| v.to_string())
        };
        assert_eq!(get("service.name").as_deref(), Some("code-name"));
        assert_eq!(get("service.version").as_deref(), Some("1.0.0"));
        assert_eq!(get("service.instance.id").as_deref(), Some("h1"));
        assert_eq!(get("deployment.environment.name").as_deref(), Some("prod"));
        assert_eq!(get("team").as_deref(), Some("vision"));
        assert_eq!(get("host.name").as_deref(), Some("h1"));
        assert_eq!(get("telemetry.sdk.language").as_deref(), Some("rust"));
        assert!(get("telemetry.sdk.version").is_some());
        assert!(get("process.pid").is_some());
    }
}
