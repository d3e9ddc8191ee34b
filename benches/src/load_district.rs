//! A district of any size for the load harness: a district file with N stations and one
//! certificate per station from the district CA, as `radio-server enroll` would issue them.

use std::path::{Path, PathBuf};

use radio_server::identity::certificate_authority::CertificateAuthority;
use relay_agent::bundle::Bundle;

use crate::simulated_agent::SimulatedAgent;

/// The station the one real `relay-agent` speaks for.
pub const REAL_AGENT: &str = "real-agent";

/// A generated district, its CA in `ca_dir`.
#[derive(Debug)]
pub struct LoadDistrict {
    /// The district file (TOML), to pass as `district_file`.
    pub district_file: PathBuf,
    /// The CA directory (`ca/` of a data dir), to copy into each run's data dir.
    pub ca_dir: PathBuf,
    /// One simulated agent per station but the last.
    pub agents: Vec<SimulatedAgent>,
    /// The real agent's bundle file.
    pub real_bundle: PathBuf,
}

/// The id of simulated station `i`.
pub fn station_id(i: usize) -> String {
    format!("xa-{i:05}")
}

/// Writes a district of `n` simulated stations plus [`REAL_AGENT`] under `dir`, and enrols all
/// of them for a server at `server` (`host:port`) named `server_name`.
pub fn prepare(
    dir: &Path,
    n: usize,
    server: &str,
    server_name: &str,
) -> anyhow::Result<LoadDistrict> {
    let mut text = String::from(
        "[district]\nid = \"load\"\nname = \"Load test\"\nprovince = \"Việt Nam\"\n\
         timezone = \"Asia/Ho_Chi_Minh\"\ndistrict_station_clusters = 1\n",
    );
    let ids: Vec<String> = (0..n)
        .map(station_id)
        .chain([REAL_AGENT.to_owned()])
        .collect();
    for id in &ids {
        text.push_str(&format!(
            "\n[[station]]\nid = \"{id}\"\nname = \"Xã {id}\"\nkind = \"wireless\"\n\
             villages = 1\nclusters = 1\nspeakers = 2\n"
        ));
    }
    let district_file = dir.join("district.toml");
    std::fs::write(&district_file, text)?;
    let ca = CertificateAuthority::load_or_create(dir, "Load test")?;
    let mut agents = Vec::with_capacity(n);
    let mut real_bundle = None;
    for id in &ids {
        let bundle = ca.enroll(id, id, server, server_name)?;
        if id == REAL_AGENT {
            let path = dir.join("real-agent.bundle");
            bundle.save(&path)?;
            real_bundle = Some(path);
        } else {
            agents.push(simulated(&bundle)?);
        }
    }
    Ok(LoadDistrict {
        district_file,
        ca_dir: ca.dir().to_path_buf(),
        agents,
        real_bundle: real_bundle.ok_or_else(|| anyhow::anyhow!("no real agent enrolled"))?,
    })
}

fn simulated(bundle: &Bundle) -> anyhow::Result<SimulatedAgent> {
    Ok(SimulatedAgent {
        commune: bundle.commune.clone(),
        config: relay_agent::tls::client_config(bundle)?,
    })
}
