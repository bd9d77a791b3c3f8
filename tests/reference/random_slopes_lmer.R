# Reference for spmle.models.RandomSlopes: lme4's normal-F special case.
#
# Command (from the repository root):
#
#     Rscript tests/reference/random_slopes_lmer.R
#
# It simulates the panel below (seeded), writes it to
# tests/reference/random_slopes.csv and fits
#
#     lmer(y ~ z + x + (1 + z | unit), data = panel, REML = FALSE)
#
# writing the fixed effects, their standard errors, sigma, the random-effect
# covariance and the log-likelihood to tests/reference/random_slopes_lmer.json,
# with the R and lme4 versions and this command. The spmle tests read the CSV
# and the JSON only (CI has no R).
#
# Design: n = 500 units, T = 6 periods; (a_i, b_i) drawn from a 3-atom law
# (atoms (-1, 0.5), (0.5, -0.5), (1.5, 1.0) with weights 0.3, 0.4, 0.3, so
# E(a, b) = (0.35, 0.25)); z_it = t - 3.5 + 0.5 N(0, 1), t = 1..6 (a growth
# curve with jittered times), x_it ~ N(0, 1) with beta = 0.7, e_it ~ N(0, 1); then 5% of
# the rows dropped at random (an unbalanced panel). lmer assumes (a_i, b_i)
# normal: its fixed effects (the GLS mean of (a, b)) and beta and sigma are
# still consistent under the 3-atom law, so they estimate what spmle's mean of
# F, beta and sigma do.

suppressPackageStartupMessages(library(lme4))

set.seed(20261122)
n <- 500
periods <- 6
atoms <- rbind(c(-1.0, 0.5), c(0.5, -0.5), c(1.5, 1.0))
weights <- c(0.3, 0.4, 0.3)
beta <- 0.7
sigma <- 1.0

which_atom <- sample(3, n, replace = TRUE, prob = weights)
a <- atoms[which_atom, 1]
b <- atoms[which_atom, 2]
panel <- expand.grid(time = seq_len(periods), unit_index = seq_len(n))
panel$unit <- sprintf("u%03d", panel$unit_index)
panel$z <- panel$time - 3.5 + 0.5 * rnorm(nrow(panel))
panel$x <- rnorm(nrow(panel))
panel$y <- a[panel$unit_index] + b[panel$unit_index] * panel$z + beta * panel$x +
  sigma * rnorm(nrow(panel))
panel <- panel[runif(nrow(panel)) > 0.05, ]
panel <- panel[, c("unit", "time", "y", "z", "x")]
for (column in c("y", "z", "x")) panel[[column]] <- signif(panel[[column]], 10)

write.csv(panel, "tests/reference/random_slopes.csv", row.names = FALSE)

fit <- lmer(y ~ z + x + (1 + z | unit), data = panel, REML = FALSE,
            control = lmerControl(optimizer = "bobyqa"))
fixed <- fixef(fit)
se <- sqrt(diag(as.matrix(vcov(fit))))
re <- as.matrix(VarCorr(fit)$unit)
attributes(re)[c("stddev", "correlation")] <- NULL

out <- list(
  command = "Rscript tests/reference/random_slopes_lmer.R",
  call = "lmer(y ~ z + x + (1 + z | unit), REML = FALSE, bobyqa)",
  r_version = R.version.string,
  lme4_version = as.character(packageVersion("lme4")),
  n_units = n,
  n_rows = nrow(panel),
  truth = list(
    atoms = atoms, weights = weights, beta = beta, sigma = sigma,
    realised_mean = c(mean(a), mean(b))
  ),
  fixed_effects = as.list(fixed),
  fixed_effects_se = as.list(se),
  sigma = sigma(fit),
  re_covariance = unname(re),
  loglik = as.numeric(logLik(fit))
)
jsonlite::write_json(out, "tests/reference/random_slopes_lmer.json",
                     auto_unbox = TRUE, digits = NA, pretty = TRUE)
cat(jsonlite::toJSON(out[c("fixed_effects", "fixed_effects_se", "sigma")],
                     auto_unbox = TRUE, digits = 8), "\n")
