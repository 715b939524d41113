# Posts' Sends and the digests' DigestRuns become one Mailing family (issue 18).
# The project is unreleased: the old ledgers are dropped, not converted.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('newsletter', '0006_event_received_at_index'),
        ('posts', '0004_comments'),
    ]

    operations = [
        migrations.DeleteModel(name='DigestDelivery'),
        migrations.DeleteModel(name='DigestRun'),
        migrations.DeleteModel(name='Delivery'),
        migrations.DeleteModel(name='Batch'),
        migrations.DeleteModel(name='Send'),
        migrations.CreateModel(
            name='Mailing',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('post', 'Post'), ('digest', 'Digest')], max_length=10)),
                ('frequency', models.CharField(blank=True, choices=[('daily', 'Daily'), ('weekly', 'Weekly')], max_length=7)),
                ('period', models.DateField(blank=True, null=True)),
                ('status', models.CharField(choices=[('planning', 'Planning'), ('sending', 'Sending'), ('done', 'Done'), ('cancelled', 'Cancelled')], default='planning', max_length=10)),
                ('planned_up_to', models.BigIntegerField(default=0)),
                ('batch_count', models.PositiveIntegerField(default=0)),
                ('batch_size', models.PositiveIntegerField(default=0)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('touched_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('planned_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('paused_at', models.DateTimeField(blank=True, null=True)),
                ('resume_at', models.DateTimeField(blank=True, null=True)),
                ('pause_reason', models.CharField(blank=True, max_length=200)),
                ('consecutive_failures', models.PositiveIntegerField(default=0)),
                ('post', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='mailings', to='posts.post')),
            ],
            options={
                'ordering': ['-created_at'],
            },
        ),
        migrations.CreateModel(
            name='Batch',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('number', models.PositiveIntegerField()),
                ('status', models.CharField(choices=[('queued', 'Queued'), ('sending', 'Sending'), ('done', 'Done'), ('uncertain', 'Uncertain'), ('cancelled', 'Cancelled')], default='queued', max_length=10)),
                ('attempts', models.PositiveIntegerField(default=0)),
                ('touched_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('size', models.PositiveIntegerField(default=0)),
                ('sent', models.PositiveIntegerField(default=0)),
                ('failed', models.PositiveIntegerField(default=0)),
                ('uncertain', models.PositiveIntegerField(default=0)),
                ('last_error', models.TextField(blank=True)),
                ('mailing', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='batches', to='newsletter.mailing')),
            ],
            options={
                'verbose_name_plural': 'batches',
            },
        ),
        migrations.CreateModel(
            name='Delivery',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('status', models.CharField(choices=[('queued', 'Queued'), ('sent', 'Sent'), ('failed', 'Failed'), ('uncertain', 'Uncertain'), ('skipped', 'Skipped')], default='queued', max_length=10)),
                ('esp_message_id', models.CharField(blank=True, max_length=255)),
                ('error', models.TextField(blank=True)),
                ('sent_at', models.DateTimeField(blank=True, null=True)),
                ('last_event', models.CharField(blank=True, max_length=20)),
                ('last_event_at', models.DateTimeField(blank=True, null=True)),
                ('batch', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='newsletter.batch')),
                ('posts', models.ManyToManyField(blank=True, related_name='digest_deliveries', to='posts.post')),
                ('mailing', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='newsletter.mailing')),
                ('subscriber', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='newsletter.subscriber')),
            ],
            options={
                'verbose_name_plural': 'deliveries',
            },
        ),
        migrations.AddConstraint(
            model_name='mailing',
            constraint=models.UniqueConstraint(condition=models.Q(('kind', 'post')), fields=('post',), name='one_announcement_per_post'),
        ),
        migrations.AddConstraint(
            model_name='mailing',
            constraint=models.UniqueConstraint(condition=models.Q(('kind', 'digest')), fields=('frequency', 'period'), name='one_digest_per_period'),
        ),
        migrations.AddIndex(
            model_name='batch',
            index=models.Index(fields=['status', 'touched_at'], name='newsletter__status_b41db7_idx'),
        ),
        migrations.AddIndex(
            model_name='batch',
            index=models.Index(fields=['mailing', 'status'], name='newsletter__mailing_1b51ee_idx'),
        ),
        migrations.AddConstraint(
            model_name='batch',
            constraint=models.UniqueConstraint(fields=('mailing', 'number'), name='batch_unique'),
        ),
        migrations.AddIndex(
            model_name='delivery',
            index=models.Index(fields=['batch', 'status'], name='newsletter__batch_i_ada277_idx'),
        ),
        migrations.AddConstraint(
            model_name='delivery',
            constraint=models.UniqueConstraint(fields=('mailing', 'subscriber'), name='delivery_once_per_subscriber'),
        ),
    ]
