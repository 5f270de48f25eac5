"""Polynomial coefficients of compiler/llvm/mathlib.py's type-specific bodies (float32 ones, and float64 sinh and
tan), highest degree first.

Not written by tools/fit_mathlib.py (which writes mathcoeffs.py and would drop these): each table was fitted for
its dtype on the range its comment gives (the float64 ones with mpmath's chebyfit), and tests/test_mathlib.py
checks the resulting functions against high-precision references (max errors in mathlib.py's docstring).
"""

# float32, sin(r) = r + r^3 * SINPI_F32(r^2) on |r| <= 1.78 (reduction by pi: one polynomial for sin and cos;
# pi/2 plus the slack of rounding x/pi in double near the 2**50 limit)
SINPI_F32 = [
    -2.3810775573451792e-08,
    2.7523174139787443e-06,
    -0.00019840884488075972,
    0.008333331905305386,
    -0.1666666716337204,
]
# float32, sinh(a) = a + a^3 * SINH_F32(a^2) on |a| <= 1
SINH_F32 = [2.806280235745362e-06, 0.00019838102161884308, 0.008333339355885983, 0.1666666716337204]
# float64 (despite this module's name), sinh(a) = a + a^3 * SINH_F64(a^2) on |a| <= 1 (mpmath chebyfit, 7 terms,
# relative error 3.5e-19)
SINH_F64 = [
    7.746178593018827e-13,
    1.6057679623801638e-10,
    2.5052117695907823e-08,
    2.7557319191381816e-06,
    0.00019841269841324198,
    0.008333333333333299,
    0.16666666666666666,
]
# float64 (despite this module's name), tan(h) = h + h^3 * TAN_F64(h^2) on |h| <= pi/8 + 0.012 (half the reduced
# argument of _tan_f64_body, with slack; mpmath chebyfit, 10 terms, relative error 2.6e-19)
TAN_F64 = [
    0.0001362250848350551,
    0.00022456628500800384,
    0.000592920407336894,
    0.0014554914824355415,
    0.0035921530297995897,
    0.008863234425145425,
    0.02186948856413206,
    0.053968253967894855,
    0.1333333333333351,
    0.3333333333333333,
]
# float32, tan(r) = r + r^3 * TAN_F32(r^2) on |r| <= 0.86 (pi/4 plus the slack of rounding x * 2/pi near 2**50)
TAN_F32 = [
    0.002303156303241849,
    -0.0011308471439406276,
    0.005398741457611322,
    0.00819607637822628,
    0.022000042721629143,
    0.05395590141415596,
    0.13333377242088318,
    0.3333333432674408,
]
# float32, log(1+f) = f + f^2 * (-1/2 + f * LOG1P_F32(f)) on [sqrt(1/2) - 1, sqrt(2) - 1] (no division)
LOG1P_F32 = [
    0.06971585005521774,
    -0.11480068415403366,
    0.11685580015182495,
    -0.12425654381513596,
    0.14249040186405182,
    -0.1666780263185501,
    0.20000715553760529,
    -0.2499999701976776,
    0.3333333134651184,
]
# float32, log2(1+f) = f * (LOG2_F32_HI + LOG2_F32(f)) on [sqrt(1/2) - 1, sqrt(2) - 1] (base 2 directly)
LOG2_F32_HI = 1.4426950216293335
LOG2_F32 = [
    -0.10749740153551102,
    0.18476596474647522,
    -0.1913914680480957,
    0.20485708117485046,
    -0.23960770666599274,
    0.28855258226394653,
    -0.36069655418395996,
    0.48089852929115295,
    -0.7213473320007324,
    1.8368968568438504e-08,
]
# float32, log10(1+f) = f * (LOG10_F32_HI + LOG10_F32(f)) on [sqrt(1/2) - 1, sqrt(2) - 1]
LOG10_F32_HI = 0.4342944920063019
LOG10_F32 = [
    -0.03235994279384613,
    0.05562009662389755,
    -0.05761457234621048,
    0.06166812777519226,
    -0.07212910801172256,
    0.08686298131942749,
    -0.10858048498630524,
    0.14476488530635834,
    -0.21714718639850616,
    -1.0371166148104294e-08,
]
