# Operation.kind takes its choices from the registry of kinds (composer/kinds/): a new
# kind is a new module there, with no further migration of these choices.

import composer.kinds
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('composer', '0012_desktop_task'),
    ]

    operations = [
        migrations.AlterField(
            model_name='operation',
            name='kind',
            field=models.CharField(choices=composer.kinds.choices, max_length=20),
        ),
    ]
