//! A real Tomcat (Debian's `tomcat10`) laid out like an ArcGIS Server: one
//! web application per GIS context, each answering which context, servlet
//! path and path info Tomcat resolved. Started by the test on a loopback
//! port with an HTTPS connector reading PEM files, never as a service, and
//! killed when dropped.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{client_config, free_port, real_peer, Issued, TestCa};
use crate::raw_tls::raw_exchange;

/// The contexts an ArcGIS Server deploys, plus `/arcgis` and ROOT so that
/// every path lands somewhere and says where. Longest first: Tomcat maps a
/// request to the longest context path that is a prefix of it at a segment
/// boundary.
pub const CONTEXTS: [&str; 7] = [
    "/arcgis/admin",
    "/arcgis/manager",
    "/arcgis/sharing",
    "/arcgis/tokens",
    "/arcgis/rest",
    "/arcgis",
    "",
];

/// The contexts a client outside `admin.allowed_ips` must never reach.
pub const ADMIN_CONTEXTS: [&str; 2] = ["/arcgis/admin", "/arcgis/manager"];

/// The context Tomcat maps a normalised, decoded-alike path to: exact,
/// case-sensitive segments, as its Mapper compares them.
pub fn context_of(path: &str) -> &'static str {
    CONTEXTS
        .iter()
        .find(|c| {
            c.is_empty()
                || path
                    .strip_prefix(**c)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .copied()
        .unwrap_or("")
}

/// What one probe page answered: `ServletContext.getContextPath()` (the
/// deployed context, never the client's spelling of it), the servlet path,
/// the path info (URL-encoded by the page), the request URI as received and
/// the protocol it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub context: String,
    pub servlet: String,
    pub info: String,
    pub uri: String,
    /// `HTTP/1.1` or `HTTP/2.0`: how the request reached Tomcat.
    pub protocol: String,
}

impl Routed {
    /// Finds the probe's lines in a response (raw HTTP/1.1, chunked or not,
    /// or an HTTP/2 body): `None` when no probe page answered.
    pub fn parse(text: &str) -> Option<Routed> {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim_end_matches('\r').to_string())
        };
        Some(Routed {
            context: field("ctx=")?,
            servlet: field("servlet=")?,
            info: field("info=")?,
            uri: field("uri=")?,
            protocol: field("proto=")?,
        })
    }

    pub fn is_admin(&self) -> bool {
        ADMIN_CONTEXTS.contains(&self.context.as_str())
    }
}

/// The probe answering in every context. `session="false"`: no session
/// cookie, so answers stay small and alike.
const PROBE_JSP: &str = r#"<%@ page contentType="text/plain; charset=UTF-8" session="false" trimDirectiveWhitespaces="true" %><%
String info = request.getPathInfo();
out.print("ctx=" + application.getContextPath() + "\n");
out.print("servlet=" + request.getServletPath() + "\n");
out.print("info=" + (info == null ? "(null)" : java.net.URLEncoder.encode(info, "UTF-8")) + "\n");
out.print("uri=" + request.getRequestURI() + "\n");
out.print("proto=" + request.getProtocol() + "\n");
%>
"#;

/// Every path of the context goes to the probe (`/*`: the servlet path is
/// empty and the path info is the rest). A JSP named in web.xml is compiled
/// by Jasper (Debian's tomcat10 brings its compiler), so no javac is needed.
const PROBE_WEB_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0" metadata-complete="true">
  <servlet><servlet-name>probe</servlet-name><jsp-file>/probe.jsp</jsp-file></servlet>
  <servlet-mapping><servlet-name>probe</servlet-name><url-pattern>/*</url-pattern></servlet-mapping>
</web-app>
"#;

/// Skipping the JAR scan for TLDs and fragments takes startup from about
/// 20 s to 3 s: the probes use neither.
const CATALINA_PROPERTIES: &str = r#"common.loader="${catalina.base}/lib","${catalina.base}/lib/*.jar","${catalina.home}/lib","${catalina.home}/lib/*.jar"
tomcat.util.scan.StandardJarScanFilter.jarsToSkip=*
"#;

const CONTEXT_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Context><JarScanner scanClassPath="false" scanManifest="false"/></Context>
"#;

const LOGGING_PROPERTIES: &str = "handlers = java.util.logging.ConsoleHandler
.level = INFO
java.util.logging.ConsoleHandler.level = INFO
java.util.logging.ConsoleHandler.formatter = org.apache.juli.OneLineFormatter
";

/// A Tomcat process and the CATALINA_BASE it runs from.
pub struct Tomcat {
    child: Child,
    pub addr: SocketAddr,
    pub base: PathBuf,
    /// From spawning the JVM to the first probe's answer.
    pub started_in: Duration,
}

impl Drop for Tomcat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where Debian's tomcat10 (or an upstream tarball's CATALINA_HOME) is,
/// found through `common::real_peer` (`None`: the test skips loudly).
pub fn catalina_home() -> Option<PathBuf> {
    let script = real_peer("catalina.sh", &["/usr/share/tomcat10/bin/catalina.sh"])?;
    script.parent()?.parent().map(Path::to_path_buf)
}

impl Tomcat {
    /// Lays out a CATALINA_BASE under `dir` and starts Tomcat with an HTTPS
    /// connector on a free loopback port, serving `cert` (issued by `ca`).
    /// Returns once every context has answered (their JSPs compiled).
    pub async fn start(java: &Path, home: &Path, dir: &Path, ca: &TestCa, cert: &Issued) -> Tomcat {
        let base = dir.join("catalina-base");
        let (cert_file, key_file) = ca.write("tomcat", cert);
        let port = free_port();
        write_base(home, &base, port, &cert_file, &key_file);
        let began = Instant::now();
        let child = spawn(java, home, &base);
        let mut tomcat = Tomcat {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            base,
            started_in: Duration::ZERO,
        };
        tomcat.wait_ready(ca).await;
        tomcat.started_in = began.elapsed();
        tomcat
    }

    /// Polls every context until its probe answers; a JVM that exits or a
    /// start past two minutes fails the test with Tomcat's console output.
    async fn wait_ready(&mut self, ca: &TestCa) {
        let client = Arc::new(client_config(ca.roots(), &[b"http/1.1"]));
        let deadline = Instant::now() + Duration::from_secs(120);
        for context in CONTEXTS {
            let target = format!("{context}/ready");
            loop {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("Tomcat exited ({status}):\n{}", self.console());
                }
                assert!(
                    Instant::now() < deadline,
                    "Tomcat did not answer {target} within 120 s:\n{}",
                    self.console()
                );
                let request = format!(
                    "GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                );
                let answer = raw_exchange(self.addr, client.clone(), request.as_bytes()).await;
                let routed = answer.ok().and_then(|a| Routed::parse(&a));
                if routed.is_some_and(|r| r.context == context) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Tomcat's console output so far (its log), for failure messages.
    pub fn console(&self) -> String {
        fs::read_to_string(self.base.join("logs/console.log")).unwrap_or_default()
    }
}

fn spawn(java: &Path, home: &Path, base: &Path) -> Child {
    let bin = home.join("bin");
    let classpath = format!(
        "{}:{}",
        bin.join("bootstrap.jar").display(),
        bin.join("tomcat-juli.jar").display()
    );
    let console = fs::File::create(base.join("logs/console.log")).unwrap();
    Command::new(java)
        // A small serial heap: the machine running the tests has few cores
        // and runs the gateway and its clients beside Tomcat.
        .args(["-Xms64m", "-Xmx384m", "-XX:+UseSerialGC"])
        .arg(format!("-Dcatalina.home={}", home.display()))
        .arg(format!("-Dcatalina.base={}", base.display()))
        .arg(format!("-Djava.io.tmpdir={}", base.join("temp").display()))
        .arg("-Djava.util.logging.manager=org.apache.juli.ClassLoaderLogManager")
        .arg(format!(
            "-Djava.util.logging.config.file={}",
            base.join("conf/logging.properties").display()
        ))
        .args([
            "-cp",
            &classpath,
            "org.apache.catalina.startup.Bootstrap",
            "start",
        ])
        .stdin(Stdio::null())
        .stdout(console.try_clone().unwrap())
        .stderr(console)
        .spawn()
        .expect("java starts")
}

fn write_base(home: &Path, base: &Path, port: u16, cert: &Path, key: &Path) {
    for d in ["conf", "logs", "work", "temp", "webapps"] {
        fs::create_dir_all(base.join(d)).unwrap();
    }
    // The server-wide web.xml defines the JSP servlet the probes need:
    // Debian keeps it in CATALINA_HOME/etc, a tarball in conf.
    let defaults = ["etc/web.xml", "conf/web.xml"]
        .iter()
        .map(|p| home.join(p))
        .find(|p| p.is_file())
        .expect("Tomcat's default web.xml");
    fs::copy(defaults, base.join("conf/web.xml")).unwrap();
    fs::write(base.join("conf/catalina.properties"), CATALINA_PROPERTIES).unwrap();
    fs::write(base.join("conf/context.xml"), CONTEXT_XML).unwrap();
    fs::write(base.join("conf/logging.properties"), LOGGING_PROPERTIES).unwrap();
    fs::write(base.join("conf/server.xml"), server_xml(port, cert, key)).unwrap();
    for context in CONTEXTS {
        let app = base.join("webapps").join(app_dir_name(context));
        fs::create_dir_all(app.join("WEB-INF")).unwrap();
        fs::write(app.join("WEB-INF/web.xml"), PROBE_WEB_XML).unwrap();
        fs::write(app.join("probe.jsp"), PROBE_JSP).unwrap();
    }
}

/// Tomcat's naming: `/arcgis/admin` deploys from `arcgis#admin`, `""` from
/// `ROOT`.
fn app_dir_name(context: &str) -> String {
    match context {
        "" => "ROOT".to_string(),
        c => c.trim_start_matches('/').replace('/', "#"),
    }
}

/// One NIO connector with JSSE (no tomcat-native needed; JSSE reads the PEM
/// files), the connector's defaults otherwise, as a GIS server's Tomcat has
/// them: that is the parser the gateway must agree with. HTTP/2 by ALPN too,
/// for a gateway with `upstream.prefer_http2`. No shutdown port.
fn server_xml(port: u16, cert: &Path, key: &Path) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="{port}" address="127.0.0.1" protocol="org.apache.coyote.http11.Http11NioProtocol"
               SSLEnabled="true" scheme="https" secure="true" maxThreads="32">
      <UpgradeProtocol className="org.apache.coyote.http2.Http2Protocol"/>
      <SSLHostConfig>
        <Certificate certificateFile="{cert}" certificateKeyFile="{key}" type="EC"/>
      </SSLHostConfig>
    </Connector>
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false" startStopThreads="0"/>
    </Engine>
  </Service>
</Server>
"#,
        cert = cert.display(),
        key = key.display()
    )
}

#[test]
fn context_of_takes_the_longest_context_at_a_segment_boundary() {
    assert_eq!(context_of("/arcgis/admin"), "/arcgis/admin");
    assert_eq!(context_of("/arcgis/admin/x"), "/arcgis/admin");
    assert_eq!(context_of("/arcgis/adminx"), "/arcgis");
    assert_eq!(context_of("/arcgis/Admin"), "/arcgis");
    assert_eq!(context_of("/arcgis/admin%20"), "/arcgis");
    assert_eq!(context_of("/arcgis/rest/admin"), "/arcgis/rest");
    assert_eq!(context_of("/arcgisx/admin"), "");
    assert_eq!(context_of("/"), "");
}
