//! TLS and SASL as Spring Boot users write them, translated to librdkafka's properties.
//!
//! Spring's keys (`kafka.security.protocol`, `kafka.ssl.*`, `kafka.jaas.*`) and the Java
//! client's property names under `kafka.properties.*` (`sasl.mechanism`, `sasl.jaas.config`,
//! `ssl.truststore.*`, `ssl.keystore.*`, `ssl.endpoint.identification.algorithm`) become the
//! librdkafka properties that mean the same. What librdkafka cannot do (JKS stores, PKCS12
//! trust stores, classpath resources, Kerberos) is refused with the key, its location and what
//! to write instead. Values are never echoed for secret keys (see `schema::is_secret`).

use super::settings::{Passthrough, Values};
use super::{invalid_value, ConfigError, Source};

/// The librdkafka properties the Spring security keys ask for, applied to every client
/// before `kafka.properties.*` (which may still override any of them).
pub(crate) fn spring_keys(values: &dyn Values, errors: &mut Vec<ConfigError>) -> Vec<Passthrough> {
    let mut out = Translation {
        props: Vec::new(),
        errors,
    };
    let get = |key: &str| values.value(key).filter(|(v, _)| !v.trim().is_empty());

    if let Some((value, source)) = get("kafka.security.protocol") {
        match value.trim().to_ascii_uppercase().as_str() {
            p @ ("PLAINTEXT" | "SSL" | "SASL_PLAINTEXT" | "SASL_SSL") => {
                out.set("security.protocol", &p.to_ascii_lowercase(), source)
            }
            _ => out.error(
                source,
                "kafka.security.protocol",
                value,
                "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
            ),
        }
    }

    // Trust: which CA certificates sign the broker's certificate.
    let trust_type = get("kafka.ssl.trust-store-type").map(|(v, _)| v.trim().to_ascii_uppercase());
    if let Some((value, source)) = get("kafka.ssl.trust-store-location") {
        out.trust_store(
            "kafka.ssl.trust-store-location",
            value,
            trust_type.as_deref(),
            source,
        );
    }
    if let Some((value, source)) = get("kafka.ssl.trust-store-certificates") {
        out.set("ssl.ca.pem", value, source);
    }

    // The client's own certificate and key (mutual TLS).
    let key_type = get("kafka.ssl.key-store-type").map(|(v, _)| v.trim().to_ascii_uppercase());
    if let Some((value, source)) = get("kafka.ssl.key-store-location") {
        let password = get("kafka.ssl.key-store-password");
        out.key_store(
            "kafka.ssl.key-store-location",
            value,
            key_type.as_deref(),
            password,
            source,
        );
    }
    if let Some((value, source)) = get("kafka.ssl.key-store-certificate-chain") {
        out.set("ssl.certificate.pem", value, source);
    }
    if let Some((value, source)) = get("kafka.ssl.key-store-key") {
        out.set("ssl.key.pem", value, source);
    }
    if let Some((value, source)) = get("kafka.ssl.key-password") {
        out.set("ssl.key.password", value, source);
    }

    // JAAS, Spring's way: a login module and its options.
    let jaas_on =
        get("kafka.jaas.enabled").is_some_and(|(v, _)| v.trim().eq_ignore_ascii_case("true"));
    if jaas_on {
        let (module, module_source) = get("kafka.jaas.login-module")
            .map(|(v, s)| (v.trim().to_owned(), s.clone()))
            .unwrap_or_else(|| {
                (
                    "com.sun.security.auth.module.Krb5LoginModule".to_owned(),
                    Source::Default,
                )
            });
        let options: Vec<(String, String, Source)> = values
            .passthrough("kafka.jaas.options.")
            .into_iter()
            .map(|p| (p.key, p.value, p.source))
            .collect();
        out.login_module("kafka.jaas.login-module", &module, &options, &module_source);
    }
    out.props
}

/// Java client property names under a `*.properties.*` section, translated in place.
pub(crate) fn java_properties(
    prefix: &str,
    list: Vec<Passthrough>,
    errors: &mut Vec<ConfigError>,
) -> Vec<Passthrough> {
    let trust_type = list
        .iter()
        .find(|p| p.key == "ssl.truststore.type")
        .map(|p| p.value.trim().to_ascii_uppercase());
    let key_type = list
        .iter()
        .find(|p| p.key == "ssl.keystore.type")
        .map(|p| p.value.trim().to_ascii_uppercase());
    let key_password = list
        .iter()
        .find(|p| p.key == "ssl.keystore.password")
        .map(|p| (p.value.clone(), p.source.clone()));
    let mut out = Translation {
        props: Vec::new(),
        errors,
    };
    for p in list {
        let key = format!("{prefix}{}", p.key);
        match p.key.as_str() {
            "sasl.jaas.config" => match parse_jaas(&p.value) {
                Some((module, options)) => {
                    let options: Vec<(String, String, Source)> = options
                        .into_iter()
                        .map(|(k, v)| (k, v, p.source.clone()))
                        .collect();
                    out.login_module(&key, &module, &options, &p.source);
                }
                None => out.error(
                    &p.source,
                    &key,
                    &p.value,
                    "a JAAS entry: <LoginModule class> required <option>=\"<value>\" ...;",
                ),
            },
            "ssl.truststore.location" => {
                out.trust_store(&key, &p.value, trust_type.as_deref(), &p.source)
            }
            "ssl.truststore.certificates" => out.set("ssl.ca.pem", &p.value, &p.source),
            "ssl.keystore.location" => {
                let password = key_password.as_ref().map(|(v, s)| (v.as_str(), s));
                out.key_store(&key, &p.value, key_type.as_deref(), password, &p.source)
            }
            // Read with the stores above; librdkafka has no such properties.
            "ssl.truststore.type"
            | "ssl.truststore.password"
            | "ssl.keystore.type"
            | "ssl.keystore.password" => {}
            "ssl.endpoint.identification.algorithm" if p.value.trim().is_empty() => {
                out.set("ssl.endpoint.identification.algorithm", "none", &p.source)
            }
            _ => out.props.push(p),
        }
    }
    out.props
}

struct Translation<'e> {
    props: Vec<Passthrough>,
    errors: &'e mut Vec<ConfigError>,
}

impl Translation<'_> {
    fn set(&mut self, key: &str, value: &str, source: &Source) {
        self.props.push(Passthrough {
            key: key.to_owned(),
            value: value.to_owned(),
            source: source.clone(),
        });
    }

    fn error(&mut self, source: &Source, key: &str, value: &str, expected: &str) {
        self.errors.push(invalid_value(
            source,
            key,
            value,
            value,
            expected.to_owned(),
        ));
    }

    /// A file path from a Spring resource location (`file:` prefix allowed).
    fn path<'v>(&mut self, key: &str, value: &'v str, source: &Source) -> Option<&'v str> {
        let value = value.trim();
        if value.starts_with("classpath:") {
            self.error(
                source,
                key,
                value,
                "a file path (file:/path or /path): there is no classpath outside the JVM",
            );
            return None;
        }
        Some(value.strip_prefix("file:").unwrap_or(value))
    }

    fn trust_store(&mut self, key: &str, value: &str, kind: Option<&str>, source: &Source) {
        let Some(path) = self.path(key, value, source) else {
            return;
        };
        match kind.unwrap_or_else(|| store_kind(path)) {
            "PEM" => self.set("ssl.ca.location", path, source),
            other => self.error(
                source,
                key,
                value,
                &format!(
                    "a PEM file of CA certificates (trust-store type PEM): librdkafka cannot read a {other} trust store; export it with `keytool -exportcert -rfc -keystore <store> -alias <alias> > ca.pem` (or `openssl pkcs12 -in <store> -nokeys -out ca.pem`)"
                ),
            ),
        }
    }

    fn key_store(
        &mut self,
        key: &str,
        value: &str,
        kind: Option<&str>,
        password: Option<(&str, &Source)>,
        source: &Source,
    ) {
        let Some(path) = self.path(key, value, source) else {
            return;
        };
        match kind.unwrap_or_else(|| store_kind(path)) {
            "PKCS12" => {
                self.set("ssl.keystore.location", path, source);
                if let Some((password, password_source)) = password {
                    self.set("ssl.keystore.password", password, password_source);
                }
            }
            // One PEM file holding the certificate chain and the private key.
            "PEM" => {
                self.set("ssl.certificate.location", path, source);
                self.set("ssl.key.location", path, source);
            }
            other => self.error(
                source,
                key,
                value,
                &format!(
                    "a PKCS12 or PEM key store: librdkafka cannot read {other}; convert it with `keytool -importkeystore -srckeystore <store> -destkeystore client.p12 -deststoretype PKCS12`"
                ),
            ),
        }
    }

    /// SASL credentials from a JAAS login module and its options.
    fn login_module(
        &mut self,
        key: &str,
        module: &str,
        options: &[(String, String, Source)],
        source: &Source,
    ) {
        let option = |name: &str| options.iter().find(|(k, _, _)| k == name);
        let short = module.rsplit('.').next().unwrap_or(module);
        match short {
            "ScramLoginModule" | "PlainLoginModule" => {
                for (name, property) in [("username", "sasl.username"), ("password", "sasl.password")] {
                    match option(name) {
                        Some((_, value, s)) => self.set(property, value, s),
                        None => self.error(
                            source,
                            key,
                            module,
                            &format!("{short} with a {name} option"),
                        ),
                    }
                }
            }
            "OAuthBearerLoginModule" => {
                // Kafka's unsecured JWT (tests and development): the principal is the `sub`.
                if let Some((_, sub, s)) = option("unsecuredLoginStringClaim_sub") {
                    self.set("enable.sasl.oauthbearer.unsecure.jwt", "true", s);
                    self.set("sasl.oauthbearer.config", &format!("principal={sub}"), s);
                } else {
                    // An OIDC token endpoint is configured with librdkafka's own keys.
                    self.error(source, key, module, "OAuthBearerLoginModule with unsecuredLoginStringClaim_sub (an unsecured JWT); for OIDC set kafka.properties.sasl.oauthbearer.method=oidc and its sasl.oauthbearer.* properties instead");
                }
            }
            _ => self.error(
                source,
                key,
                module,
                "org.apache.kafka.common.security.scram.ScramLoginModule, ...plain.PlainLoginModule or ...oauthbearer.OAuthBearerLoginModule (Kerberos/GSSAPI is not built in)",
            ),
        }
    }
}

/// PEM, PKCS12 or JKS from a store's file name (Java's default type is JKS).
fn store_kind(path: &str) -> &'static str {
    let lower = path.to_ascii_lowercase();
    if [".pem", ".crt", ".cer"].iter().any(|e| lower.ends_with(e)) {
        "PEM"
    } else if [".p12", ".pfx", ".pkcs12"]
        .iter()
        .any(|e| lower.ends_with(e))
    {
        "PKCS12"
    } else {
        "JKS"
    }
}

/// `org...ScramLoginModule required username="alice" password="secret";` -> module, options.
fn parse_jaas(text: &str) -> Option<(String, Vec<(String, String)>)> {
    let text = text.trim().trim_end_matches(';').trim();
    let (module, rest) = text.split_once(char::is_whitespace)?;
    let rest = rest.trim_start();
    let flag_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let flag = &rest[..flag_end];
    if !["required", "requisite", "sufficient", "optional"].contains(&flag) {
        return None;
    }
    let mut options = Vec::new();
    let mut rest = rest[flag_end..].trim_start();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        options.push((name.trim().to_owned(), value.to_owned()));
        rest = tail.trim_start();
    }
    Some((module.to_owned(), options))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaas_entries_parse_like_the_java_client_writes_them() {
        let (module, options) = parse_jaas(
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="a b=c";"#,
        )
        .expect("parses");
        assert_eq!(
            module,
            "org.apache.kafka.common.security.scram.ScramLoginModule"
        );
        assert_eq!(
            options,
            [
                ("username".to_owned(), "alice".to_owned()),
                ("password".to_owned(), "a b=c".to_owned())
            ]
        );
        assert!(
            parse_jaas("ScramLoginModule username=x").is_none(),
            "no control flag"
        );
    }

    #[test]
    fn store_kinds_follow_the_file_name() {
        assert_eq!(store_kind("/etc/ca.pem"), "PEM");
        assert_eq!(store_kind("client.P12"), "PKCS12");
        assert_eq!(store_kind("truststore.jks"), "JKS");
    }
}
