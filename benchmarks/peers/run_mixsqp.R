# Run R's mixsqp NPMLE solver on a log-likelihood matrix (peer benchmark).
#
#   Rscript run_mixsqp.R IN.bin n m OUT_PREFIX [K]
#
# IN.bin: n*m raw little-endian float64 values of LOG likelihoods in ROW-MAJOR
# order (rows = observations), e.g. written by numpy's
# L.astype("<f8").tofile("IN.bin"). K (default 1) is the number of warm calls;
# the best one is reported.
#
# Calls mixsqp(L, log = TRUE, control = list(verbose = FALSE)); all other
# controls are mixsqp's defaults. Writes the mixture weights as raw
# little-endian float64 to OUT_PREFIX.probs.bin and prints one JSON line:
# {"solver", "version", "time_first", "time_warm", "iterations", "status"}.
# "iterations" counts SQP iterations (rows of fit$progress with a dual
# residual), not the numiter.em = 10 EM warm-up steps.

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 4) {
  stop("usage: Rscript run_mixsqp.R IN.bin n m OUT_PREFIX [K]")
}
infile <- args[1]
n <- as.integer(args[2])
m <- as.integer(args[3])
out_prefix <- args[4]
K <- if (length(args) >= 5) as.integer(args[5]) else 1L

suppressPackageStartupMessages(library(mixsqp))

v <- readBin(infile, what = "double", n = as.double(n) * m, size = 8,
             endian = "little")
if (length(v) != as.double(n) * m) {
  stop(sprintf("read %d values from %s, expected n*m = %.0f",
               length(v), infile, as.double(n) * m))
}
L <- matrix(v, nrow = n, ncol = m, byrow = TRUE)
rm(v)

solve_once <- function() {
  t0 <- proc.time()[["elapsed"]]
  fit <- mixsqp(L, log = TRUE, control = list(verbose = FALSE))
  list(fit = fit, time = proc.time()[["elapsed"]] - t0)
}

res <- solve_once()
time_first <- res$time
time_warm <- NA_real_
for (i in seq_len(max(K, 0L))) {
  res <- solve_once()
  time_warm <- if (is.na(time_warm)) res$time else min(time_warm, res$time)
}
fit <- res$fit

con <- file(paste0(out_prefix, ".probs.bin"), "wb")
writeBin(as.double(fit$x), con, size = 8, endian = "little")
close(con)

iterations <- if (is.null(fit$progress)) 0L else
  sum(!is.na(fit$progress$max.rdual))

json_num <- function(x) if (is.na(x)) "null" else sprintf("%.9g", x)
json_str <- function(s) sprintf("\"%s\"", gsub("([\"\\\\])", "\\\\\\1", s))

cat(sprintf(
  "{\"solver\": \"R mixsqp\", \"version\": %s, \"time_first\": %s, \"time_warm\": %s, \"iterations\": %d, \"status\": %s}\n",
  json_str(as.character(packageVersion("mixsqp"))),
  json_num(time_first), json_num(time_warm), as.integer(iterations),
  json_str(as.character(fit$status))))
