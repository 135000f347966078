"""An independent re-statement of the official DiffKD (hunto/DiffKD) for parity tests.

Written from the method's description: the official attribute names (so that its state dict has
the official layout) and the official two-stage DDIM update, including the re-derivation of the
noise from the predicted x0 (``use_clipped_model_output=True``). It does not import diffkd_mm.
"""
import torch
import torch.nn.functional as F
from torch import nn


class _Bottleneck(nn.Module):

    def __init__(self, c, r=4):
        super().__init__()
        h = c // r
        self.block = nn.Sequential(
            nn.Conv2d(c, h, 1), nn.BatchNorm2d(h), nn.ReLU(), nn.Conv2d(h, h, 3, padding=1),
            nn.BatchNorm2d(h), nn.ReLU(), nn.Conv2d(h, c, 1), nn.BatchNorm2d(c))

    def forward(self, x):
        return self.block(x) + x


class OfficialLayoutDiffKD(nn.Module):

    def __init__(self, cs, ct, kernel_size=3, ae_channels=None, proj_bn=True, steps=5):
        super().__init__()
        self.steps = steps
        latent = ct
        if ae_channels:
            self.ae = nn.Module()
            self.ae.encoder = nn.Sequential(
                nn.Conv2d(ct, ae_channels, 1), nn.BatchNorm2d(ae_channels))
            self.ae.decoder = nn.Sequential(nn.Conv2d(ae_channels, ct, 1))
            latent = ae_channels
        else:
            self.ae = None
        self.trans = nn.Conv2d(cs, latent, 1)
        self.model = nn.Module()
        self.model.time_embedding = nn.Embedding(1280, latent)
        self.noise_adapter = nn.Module()
        if kernel_size == 3:
            self.model.pred = nn.Sequential(
                _Bottleneck(latent), _Bottleneck(latent), nn.Conv2d(latent, latent, 1),
                nn.BatchNorm2d(latent))
            self.noise_adapter.feat = nn.Sequential(_Bottleneck(latent, 8), nn.AdaptiveAvgPool2d(1))
        else:
            w = 4 * latent
            self.model.pred = nn.Sequential(
                nn.Conv2d(latent, w, 1), nn.BatchNorm2d(w), nn.ReLU(), nn.Conv2d(w, latent, 1),
                nn.BatchNorm2d(latent), nn.Conv2d(latent, w, 1), nn.BatchNorm2d(w), nn.ReLU(),
                nn.Conv2d(w, latent, 1))
            self.noise_adapter.feat = nn.Sequential(
                nn.Conv2d(latent, 2 * latent, 1), nn.BatchNorm2d(2 * latent), nn.ReLU(),
                nn.Conv2d(2 * latent, latent, 1), nn.BatchNorm2d(latent))
        self.noise_adapter.pred = nn.Linear(latent, 2)
        self.proj = (
            nn.Sequential(nn.Conv2d(latent, latent, 1), nn.BatchNorm2d(latent))
            if proj_bn else nn.Conv2d(latent, latent, 1))
        betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float32)
        self.alphas_cumprod = torch.cumprod(1 - betas, 0)

    def eps_theta(self, x, t):
        return self.model.pred(x + self.model.time_embedding(t)[..., None, None])

    def forward(self, fs, ft, noise, ddim_noise, t):
        s = self.trans(fs)
        rec_loss = None
        if self.ae is not None:
            hidden = self.ae.encoder(ft)
            rec_loss = F.mse_loss(ft, self.ae.decoder(hidden))
            ft = hidden.detach()
        # start point: g * s + (1 - g) * eps
        g = self.noise_adapter.pred(self.noise_adapter.feat(s).flatten(1)).softmax(1)[:, 0]
        x = g[:, None, None, None] * s + (1 - g[:, None, None, None]) * noise
        ab = self.alphas_cumprod
        ratio = 1000 // (2 * self.steps)
        for k in range(self.steps - 1, -1, -1):  # the second half of a 2S-step schedule
            t_cur = k * ratio
            eps = self.eps_theta(x, torch.tensor(t_cur))
            a_t = ab[t_cur]
            a_prev = ab[t_cur - ratio] if t_cur - ratio >= 0 else torch.tensor(1.0)
            x0 = (x - (1 - a_t)**0.5 * eps) / a_t**0.5
            eps = (x - a_t**0.5 * x0) / (1 - a_t)**0.5
            x = a_prev**0.5 * x0 + (1 - a_prev)**0.5 * eps
        refined = self.proj(x)
        xt = ab[t].sqrt()[:, None, None, None] * ft + (1 - ab[t]).sqrt()[:, None, None,
                                                                         None] * ddim_noise
        ddim_loss = F.mse_loss(self.eps_theta(xt, t), ddim_noise)
        return refined, ddim_loss, ft, rec_loss, g
