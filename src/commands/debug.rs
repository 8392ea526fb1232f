//! `debug alloc-loop`: allocates in a loop and prints each acknowledged allocation; the crash test
//! kills it with SIGKILL and checks that everything it printed survived.

use std::io::Write;

use anyhow::Result;

use crate::context::Ctx;

pub fn alloc_loop(ctx: &Ctx, subdivision: &str, threads: usize, count: u64) -> Result<()> {
    let engine = std::sync::Arc::new(ctx.engine()?);
    let has = engine.read(|ipam| ipam.has_subdivision(subdivision))?;
    if !has {
        engine.execute_untimed(|ipam| {
            ipam.add_subdivision(cidrcast_core::model::SubdivisionSpec::new(subdivision))
        })?;
    }
    let pid = std::process::id();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let engine = engine.clone();
            let subdivision = subdivision.to_string();
            std::thread::spawn(move || -> Result<()> {
                let stdout = std::io::stdout();
                for i in 0..count {
                    let vm = format!("p{pid}-t{t}-{i}");
                    let a = engine
                        .execute(|ipam, now| ipam.allocate(&subdivision, &vm, None, None, now))?;
                    // Acknowledged: durable before this line is printed.
                    writeln!(stdout.lock(), "ack {vm} {}", a.address)?;
                    if i % 3 == 2 {
                        let prev = format!("p{pid}-t{t}-{}", i - 1);
                        engine.execute(|ipam, now| ipam.release(&prev, now))?;
                        writeln!(stdout.lock(), "released {prev}")?;
                    }
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker panicked")?;
    }
    Ok(())
}
